"""The fold rule: a split for a sequence that has no chromosome.

A sequence's split follows the sha256 of its upper-cased letters and the seed, so identical
sequences always share a split and cannot leak across it. Dependency-free, so the report
can state the rule without loading the shard writer.
"""

from __future__ import annotations

import hashlib

VALID_FRACTION = 0.1
TEST_FRACTION = 0.1


def fold_split(sequence: str, seed: int) -> str:
    """The split of ``sequence``: ``test``, ``valid`` or ``train`` by its hash and the seed."""
    digest = hashlib.sha256(f"{seed}:{sequence.upper()}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return "test" if u < TEST_FRACTION else "valid" if u < TEST_FRACTION + VALID_FRACTION \
        else "train"
