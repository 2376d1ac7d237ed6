"""Sequence tables: a target given as labelled sequences, without genome coordinates.

Published sets (the ChIP-seq benchmark sets, GUE-style benchmarks, MPRA libraries) come as
sequences with labels, not peaks. A sample-sheet row names such a file in ``sequences``;
this module turns it into the same one-hot shards the peak path writes, so the CNN, the
baselines, transfer and the motif stages run on it unchanged. Layouts, by file name
(optionally gzipped):

* a table, ``.tsv``/``.txt`` (tab) or ``.csv`` (comma), with a header: ``sequence`` and
  ``label`` (0/1), optionally ``split`` (train/valid/test) and ``name``;
* a FASTA of positives, ``.fa``/``.fasta``/``.fna``: each positive gets
  ``NEGATIVES_PER_POSITIVE`` dinucleotide shuffles as negatives (same composition and
  dinucleotide content, motifs destroyed), the usual negatives of these benchmarks.

Without a ``split`` column the fold rule applies: a sequence's split follows the sha256
of its upper-cased letters and the seed (``helixflow.folds``: 10% valid, 10% test,
the rest train), so identical sequences always share a split and cannot leak across it;
a positive's shuffles follow their positive. Sequences are centred in a window as long as
the longest one, padded with N (all-zero columns).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .encode import one_hot
from .errors import InputError
from .files import open_text, sha256sum, write_json
from .folds import fold_split
from .intervals import SPLITS
from .shards import add_split, new_manifest, shuffled_sequences, write_array

NEGATIVES_PER_POSITIVE = 1
FASTA_SUFFIXES = (".fa", ".fasta", ".fna")
TABLE_SUFFIXES = {".tsv": "\t", ".txt": "\t", ".csv": ","}
_LETTERS = re.compile(r"^[ACGTNacgtn]+$")


@dataclass
class SequenceTable:
    """Labelled sequences: ``names``, ``sequences`` (str), ``labels`` (0/1), ``splits``."""

    names: list[str]
    sequences: list[str]
    labels: np.ndarray
    splits: list[str]
    shuffled: np.ndarray      # bool: a negative made by shuffling a positive (FASTA input)


def _layout(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last in FASTA_SUFFIXES:
        return "fasta"
    if last in TABLE_SUFFIXES:
        return last
    raise InputError(f"cannot tell the layout of a sequence file named {path.name!r}",
                     path=path, fix="name a table .tsv/.csv (optionally .gz) with columns "
                     "sequence and label, or a FASTA of positives .fa/.fasta")


def _check_letters(sequence: str, path: Path, line: int) -> None:
    if not _LETTERS.match(sequence):
        bad = sorted(set(re.sub(r"[ACGTNacgtn]", "", sequence)))[:5]
        raise InputError(f"sequence has letters other than A, C, G, T, N: {''.join(bad)!r}"
                         if sequence else "empty sequence", path=path, line=line,
                         fix="give DNA letters only (IUPAC codes other than N: write N)")


def _read_fasta(path: Path) -> list[tuple[str, str, int]]:
    """(name, sequence, line of the header) per record."""
    records: list[tuple[str, list[str], int]] = []
    with open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            text = text.strip()
            if text.startswith(">"):
                records.append((text[1:].split()[0] if text[1:].strip() else
                                f"seq{len(records) + 1}", [], number))
            elif text:
                if not records:
                    raise InputError("sequence before the first '>' header", path=path,
                                     line=number, fix="start each record with a '>name' line")
                records[-1][1].append(text)
    return [(name, "".join(parts), line) for name, parts, line in records]


def read_sequence_table(path: str | Path, seed: int) -> SequenceTable:
    """Read a table or a FASTA of positives (module doc); errors name the file and line."""
    path = Path(path)
    layout = _layout(path)
    if layout == "fasta":
        records = _read_fasta(path)
        if not records:
            raise InputError("no FASTA records", path=path, fix="give at least one '>name' "
                             "record per positive sequence")
        names, sequences, labels, splits, shuffled = [], [], [], [], []
        for name, sequence, line in records:
            _check_letters(sequence, path, line)
            split = fold_split(sequence, seed)
            for k in range(1 + NEGATIVES_PER_POSITIVE):
                names.append(name if k == 0 else f"{name}_shuffle{k}")
                sequences.append(sequence)
                labels.append(int(k == 0))
                splits.append(split)
                shuffled.append(k > 0)
        return SequenceTable(names, sequences, np.array(labels, dtype=np.uint8), splits,
                             np.array(shuffled))
    with open_text(path) as handle:
        table = pd.read_csv(handle, sep=TABLE_SUFFIXES[layout], dtype=str,
                            keep_default_na=False, comment=None)
    table.columns = [c.strip().lower() for c in table.columns]
    missing = [c for c in ("sequence", "label") if c not in table.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", path=path, line=1,
                         fix="the header needs 'sequence' and 'label' (0/1); 'split' and "
                         "'name' are optional")
    for i, (sequence, label) in enumerate(zip(table["sequence"], table["label"],
                                              strict=True)):
        _check_letters(sequence.strip(), path, i + 2)
        if label.strip() not in ("0", "1"):
            raise InputError(f"label {label!r} is not 0 or 1", path=path, line=i + 2,
                             fix="write 1 for bound/positive and 0 for negative")
    sequences = [s.strip() for s in table["sequence"]]
    if "split" in table.columns:
        splits = [s.strip().lower() for s in table["split"]]
        for i, split in enumerate(splits):
            if split not in SPLITS:
                raise InputError(f"split {table['split'].iloc[i]!r} is not train, valid or "
                                 "test", path=path, line=i + 2, fix="use train, valid or test "
                                 "(or drop the column to split by the fold rule)")
    else:
        splits = [fold_split(s, seed) for s in sequences]
    names = ([n.strip() for n in table["name"]] if "name" in table.columns
             else [f"seq{i + 1}" for i in range(len(table))])
    if len(set(names)) != len(names):
        duplicate = pd.Series(names)[pd.Series(names).duplicated()].index[0]
        raise InputError(f"name {names[duplicate]!r} appears twice", path=path,
                         line=int(duplicate) + 2, fix="give each sequence its own name")
    return SequenceTable(names, sequences, table["label"].str.strip().astype(np.uint8)
                         .to_numpy(), splits, np.zeros(len(table), dtype=bool))


def _one_hot_centred(sequences: list[str], shuffle: np.ndarray, window: int,
                     seed: int) -> np.ndarray:
    """uint8 (n, 4, window), each sequence centred; rows in ``shuffle`` dinucleotide-shuffled
    at their own length (the N padding stays outside), one tangermeme call per length."""
    X = np.zeros((len(sequences), 4, window), dtype=np.uint8)
    lengths = np.array([len(s) for s in sequences])
    for i, sequence in enumerate(sequences):
        if not shuffle[i]:
            start = (window - len(sequence)) // 2
            X[i, :, start:start + len(sequence)] = one_hot(sequence)
    for k, length in enumerate(np.unique(lengths[shuffle])):
        rows = np.flatnonzero(shuffle & (lengths == length))
        block = shuffled_sequences(np.stack([one_hot(sequences[i]) for i in rows]), seed + k)
        start = (window - int(length)) // 2
        X[rows, :, start:start + int(length)] = block
    return X


def build_table_shards(path: str | Path, out_dir: str | Path, target: str, seed: int,
                       checked: str | Path) -> dict:
    """Shards of a sequence table (the layout of :func:`helixflow.shards.build_shards`) and
    the input check the report reads (``checked``). Refuses a split without both classes."""
    path, out_dir = Path(path), Path(out_dir)
    table = read_sequence_table(path, seed)
    window = max(len(s) for s in table.sequences)
    splits = np.array(table.splits)
    for split in SPLITS:
        labels = table.labels[splits == split]
        if labels.sum() == 0 or labels.sum() == len(labels):
            raise InputError(f"the {split} split has {int(labels.sum())} positives and "
                             f"{int(len(labels) - labels.sum())} negatives: it needs both",
                             path=path, fix="add sequences, fix the 'split' column, or drop "
                             "it so the fold rule splits the table")
    digest = sha256sum(path)
    manifest = new_manifest(window, seed, {"sequences": digest})
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for s, split in enumerate(SPLITS):
        rows = np.flatnonzero(splits == split)
        shuffle = table.shuffled[rows]
        X = _one_hot_centred([table.sequences[i] for i in rows], shuffle, window,
                             seed + 1000 * s)
        y = table.labels[rows]
        kinds = {"sequence": int((~shuffle).sum())} | (
            {"shuffle": int(shuffle.sum())} if shuffle.any() else {})
        add_split(manifest, out_dir, split, write_array(out_dir / f"{split}.x.npy", X), y,
                  [table.names[i] for i in rows], kinds)
        counts[split] = {"n": len(rows), "n_pos": int(y.sum())}
        print(f"sequence-shards: {target} {split}: {len(rows):,} sequences "
              f"({int(y.sum()):,} positive)", file=sys.stderr, flush=True)
    write_json(out_dir / "manifest.json", manifest)
    write_json(checked, {"targets": {target: {
        "path": str(path), "sha256": digest, "sequences": len(table.names),
        "window": window, "per_split": counts}}})
    return manifest
