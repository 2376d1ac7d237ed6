"""One-hot shards: per split, memory-mappable ``.npy`` arrays plus a checksummed JSON manifest.

Layout of a shard directory::

    manifest.json       window, alphabet, counts per split and label, sha256 of every
                        array and of the source files
    {split}.x.npy       uint8, shape=(n, 4, window), one-hot (A, C, G, T; N all-zero)
    {split}.y.npy       uint8, shape=(n,), 1 = bound
    {split}.names.txt   one window name per row, in array order
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tangermeme.ersatz import dinucleotide_shuffle

from .encode import ALPHABET
from .errors import InputError
from .files import atomic_path, read_json, sha256sum, write_json
from .genome import iter_one_hot_windows
from .intervals import SPLITS, read_windows


def shuffled_sequences(X: np.ndarray, seed: int) -> np.ndarray:
    """One dinucleotide shuffle per sequence (tangermeme), uint8 shape=(n, 4, L) like ``X``."""
    if len(X) == 0:
        return X
    shuffled = dinucleotide_shuffle(torch.from_numpy(X.astype(np.int8)), n=1, random_state=seed,
                                   allow_N=True)
    return shuffled[:, 0].numpy().astype(np.uint8)


SHUFFLE_CHUNK = 4096  # shuffle negatives drawn per tangermeme call (fixed: part of the seed)
ROWS_PER_CHUNK = 4096  # windows read and written at a time: memory follows this, not the split


def _array_entry(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> dict:
    return {"file": path.name, "sha256": sha256sum(path), "shape": list(shape),
            "dtype": str(np.dtype(dtype))}


def write_array(path: Path, array: np.ndarray) -> dict:
    """Save ``array`` as ``.npy`` (atomically); returns its manifest entry."""
    with atomic_path(path) as tmp:
        np.save(tmp, array)
    return _array_entry(path, array.shape, array.dtype)


def new_manifest(window: int, seed: int, sources: dict[str, str]) -> dict:
    """The manifest's header; :func:`add_split` fills ``splits``."""
    return {"format": "helixflow-onehot-shards/1", "alphabet": ALPHABET, "window": window,
            "seed": seed, "splits": {}, "sources": sources}


def add_split(manifest: dict, out_dir: Path, split: str, x_entry: dict, y: np.ndarray,
              names: list[str], by_kind: dict[str, int]) -> None:
    """Write a split's labels and names beside its one-hot array (``x_entry``) and list all
    three in ``manifest``."""
    names_path = out_dir / f"{split}.names.txt"
    with atomic_path(names_path) as tmp:
        tmp.write_text("".join(f"{n}\n" for n in names))
    manifest["splits"][split] = {
        "n": len(y), "n_pos": int(y.sum()), "n_neg": int(len(y) - y.sum()),
        "by_kind": by_kind, "x": x_entry, "y": write_array(out_dir / f"{split}.y.npy", y),
        "names": {"file": names_path.name, "sha256": sha256sum(names_path)}}


def _write_onehot(path: Path, fasta: str | Path, part: pd.DataFrame, window: int,
                  seed: int) -> dict:
    """Write ``part``'s one-hot windows into a ``.npy`` file, chunk by chunk.

    Rows of kind 'shuffle' are then replaced, ``SHUFFLE_CHUNK`` at a time, by a dinucleotide
    shuffle of themselves (chunk ``c`` drawn with ``seed + c``). Positional writes, not a
    writable memory map: every page of a mapped output counts in the job's resident memory
    until the end (a full-size hg38 CTCF split reached 1.27 GB against a 0.92 GB request).
    """
    shape = (len(part), 4, window)
    if not len(part):
        return write_array(path, np.zeros(shape, dtype=np.uint8))
    row_bytes = 4 * window
    with atomic_path(path) as tmp, open(tmp, "w+b") as handle:
        np.lib.format.write_array_header_1_0(handle, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
            "fortran_order": False, "shape": shape})
        offset, fd = handle.tell(), handle.fileno()
        handle.truncate(offset + len(part) * row_bytes)
        row = 0
        for block in iter_one_hot_windows(fasta, part, ROWS_PER_CHUNK):
            os.pwrite(fd, np.ascontiguousarray(block, dtype=np.uint8).tobytes(),
                      offset + row * row_bytes)
            row += len(block)
        shuffle_rows = np.flatnonzero((part["kind"] == "shuffle").to_numpy())
        for c, i in enumerate(range(0, len(shuffle_rows), SHUFFLE_CHUNK)):
            rows = shuffle_rows[i:i + SHUFFLE_CHUNK].tolist()
            block = np.stack([np.frombuffer(os.pread(fd, row_bytes, offset + r * row_bytes),
                                            dtype=np.uint8).reshape(4, window)
                              for r in rows])
            for r, shuffled in zip(rows, shuffled_sequences(block, seed + c), strict=True):
                os.pwrite(fd, np.ascontiguousarray(shuffled, dtype=np.uint8).tobytes(),
                          offset + r * row_bytes)
    return _array_entry(path, shape, np.uint8)


def build_shards(windows_bed: str | Path, fasta: str | Path, out_dir: str | Path, seed: int,
                 sources: dict[str, str] | None = None) -> dict:
    """Encode every window of ``windows_bed`` into per-split shards; returns the manifest.

    Each split's one-hot array is written straight into a memory-mapped ``.npy`` file,
    ``ROWS_PER_CHUNK`` windows at a time. Shuffle negatives (kind 'shuffle') are
    dinucleotide shuffles of their source window, drawn with ``seed`` so a rebuild gives
    the same bytes.
    """
    out_dir = Path(out_dir)
    windows = read_windows(windows_bed)
    widths = set((windows["end"] - windows["start"]).tolist())
    if len(widths) != 1:
        raise InputError(f"windows have several widths {sorted(widths)}", path=windows_bed,
                         fix="rebuild the windows with one 'windows: width'")
    manifest = new_manifest(widths.pop(), seed,
                            {"windows": sha256sum(windows_bed), **(sources or {})})
    for split in SPLITS:
        part = windows[windows["split"] == split].reset_index(drop=True)
        x_entry = _write_onehot(out_dir / f"{split}.x.npy", fasta, part, manifest["window"],
                                seed + 1000 * SPLITS.index(split))
        add_split(manifest, out_dir, split, x_entry, part["label"].to_numpy(dtype=np.uint8),
                  part["name"].tolist(), part["kind"].value_counts().to_dict())
        print(f"shards: {split} {len(part):,} windows written", file=sys.stderr, flush=True)
    write_json(out_dir / "manifest.json", manifest)
    return manifest


@dataclass
class Split:
    """One split read from shards: ``X`` uint8 shape=(n, 4, L) (memory-mapped), ``y`` shape=(n,)."""

    X: np.ndarray
    y: np.ndarray
    names: list[str]


def load_split(manifest_path: str | Path, split: str, verify: bool = True) -> Split:
    """Memory-map one split's arrays, checking each file's sha256 against the manifest."""
    manifest_path = Path(manifest_path)
    entry = read_json(manifest_path)["splits"][split]
    for key in ("x", "y", "names"):
        path = manifest_path.parent / entry[key]["file"]
        if verify and sha256sum(path) != entry[key]["sha256"]:
            raise InputError(f"checksum mismatch for {path.name}", path=path,
                             fix="the shard changed after it was written; delete the shard "
                             "directory and let the workflow rebuild it")
    arrays = [np.load(manifest_path.parent / entry[k]["file"], mmap_mode="r") for k in "xy"]
    names = (manifest_path.parent / entry["names"]["file"]).read_text().splitlines()
    return Split(X=arrays[0], y=arrays[1], names=names)
