"""The small JSON record each step writes next to its output (bpnet-lite style)."""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .files import sha256sum, write_json

PACKAGES = ("helixflow", "numpy", "pandas", "torch", "scikit-learn", "pyfaidx", "pysam",
            "pybedtools", "pyjaspar", "memelite", "logomaker", "tangermeme", "matplotlib",
            "safetensors", "snakemake")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_record(path: str | Path, step: str, params: dict[str, Any],
                 inputs: dict[str, str | Path], results: dict[str, Any],
                 sha256: dict[str, str] | None = None) -> dict:
    """Write ``record.json``: what ran, with which params, inputs' sha256, versions, results.

    ``sha256``: digests the caller already computed, by input name (a large FASTA is then not
    read a second time).
    """
    known = sha256 or {}
    record = {
        "step": step,
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": params,
        "inputs": {name: {"path": str(p), "sha256": known.get(name) or sha256sum(p)}
                   for name, p in inputs.items() if Path(p).is_file()},
        "versions": package_versions(),
        "results": results,
    }
    write_json(path, record)
    return record


def code_digest(*modules: str) -> str:
    """Short sha256 of the source of helixflow modules (e.g. ``"train", "models/cnn"``).

    Pretraining's checkpoint fingerprint hashes ``helixflow.pretrain.PRETRAIN_CODE`` with it.
    Rules pass :func:`helixflow.code_graph.command_digest` instead: the code their command
    runs, found from the import graph (Snakemake's own code trigger only sees the shell).
    """
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for module in sorted(modules):
        digest.update((root / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]
