"""Pretraining corpus: every training chromosome tiled into windows and tokenized into shards.

Streaming in constant memory: each chromosome is read from the indexed FASTA in chunks of
``chunk_bp`` (plus the window overlap), never whole; chromosomes are built in parallel worker
processes. Layout of a corpus directory::

    manifest.json       tokenizer, window_bp, stride_bp, split, chromosomes, counts, shards with
                        sha256, source checksums (written last, atomically)
    shard_{i:05d}.npy   tokens, shape=(n_windows, n_tokens), tokenizer dtype (uint8/uint16)
    coords_{i:05d}.npy  int64, shape=(n_windows, 2): chromosome index (into 'chromosomes'), start

Windows start at 0, stride_bp, 2 * stride_bp, ... and must fit the chromosome (a tail shorter
than a window is not tiled). Soft-masked (lower-case) bases are ordinary bases; IUPAC codes and
any other non-ACGT byte are counted and read as N; a window with more than ``max_n_fraction``
N is dropped. Shards are per chromosome: ``shard_windows`` rows each, the last one of a
chromosome shorter.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .encode import BASE_LOOKUP
from .errors import InputError
from .files import read_json, sha256sum, write_json
from .tokenize import Tokenizer

FORMAT = "helixflow-token-corpus/1"
IUPAC = "RYSWKMBDHV"
_UPPER = np.arange(256, dtype=np.uint8)
_UPPER[ord("a"):ord("z") + 1] -= 32

DEFAULT_PARAMS = {"k": 1, "token_stride": 1, "window_bp": 512, "stride_bp": 256,
                  "max_n_fraction": 0.1, "shard_windows": 65536, "exclude_chroms": [],
                  "chunk_bp": 1 << 20, "workers": 2}


def run_pretrain_corpus(fasta: str | Path, out_dir: str | Path, params: dict | None = None,
                        ) -> dict:
    """Build the pretraining corpus of every chromosome in ``fasta`` except the held-out ones.

    ``params`` (defaults :data:`DEFAULT_PARAMS`): k, token_stride (the tokenizer),
    window_bp, stride_bp, max_n_fraction, shard_windows, exclude_chroms (validation and test
    chromosomes, never tiled), chunk_bp, workers. Writes ``out_dir/manifest.json`` and the
    shards; returns a summary (counts, shards, manifest path).
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    unknown = set(p) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown corpus params {sorted(unknown)}; known: {list(DEFAULT_PARAMS)}")
    records = read_fai_records(fasta)
    missing = sorted(set(p["exclude_chroms"]) - set(records))
    if missing:
        raise InputError(f"held-out chromosomes {missing} are not in the genome "
                         f"(known: {', '.join(list(records)[:5])}...)", path=f"{fasta}.fai",
                         fix="fix the split's chromosome names or add chrom_aliases")
    chroms = [c for c in records if c not in set(p["exclude_chroms"])]
    manifest = build_corpus(fasta, chroms, out_dir, Tokenizer(p["k"], p["token_stride"]),
                            window_bp=p["window_bp"], stride_bp=p["stride_bp"],
                            max_n_fraction=p["max_n_fraction"], shard_windows=p["shard_windows"],
                            split="train", workers=p["workers"], chunk_bp=p["chunk_bp"],
                            excluded=list(p["exclude_chroms"]))
    return {"manifest": str(Path(out_dir) / "manifest.json"), "params": p,
            "n_shards": len(manifest["shards"]), **manifest["counts"]}


def run_split_corpus(fasta: str | Path, out_dir: str | Path, split: str, splits: dict,
                     params: dict, workers: int = 1) -> dict:
    """The corpus of one split's chromosomes (the workflow's step), with a ``record.json``.

    ``splits``: the config's valid/test(/train) chromosome lists; ``params``: the tokenizer and
    tiling (k, token_stride, window_bp, stride_bp for train, heldout_stride_bp for valid and
    test, max_n_fraction, shard_windows). Chromosomes of the other splits are never read.
    """
    from .genome import read_fai
    from .intervals import resolve_splits
    from .records import write_record
    split_of = resolve_splits(read_fai(f"{fasta}.fai"), splits["valid"], splits["test"],
                              splits.get("train"))
    chroms = [c for c, s in split_of.items() if s == split]
    stride = params["stride_bp"] if split == "train" else params["heldout_stride_bp"]
    manifest = build_corpus(fasta, chroms, out_dir, Tokenizer(params["k"], params["token_stride"]),
                            window_bp=params["window_bp"], stride_bp=stride,
                            max_n_fraction=params["max_n_fraction"],
                            shard_windows=params["shard_windows"], split=split, workers=workers,
                            excluded=[c for c in split_of if c not in chroms])
    write_record(Path(out_dir) / "record.json", "corpus", {**params, "split": split},
                 {"fasta": fasta}, manifest["counts"],
                 sha256={"fasta": manifest["source"]["fasta_sha256"]})
    return manifest


def read_fai_records(fasta: str | Path) -> dict[str, tuple[int, int, int, int]]:
    """``{chrom: (length, offset, line_bases, line_bytes)}`` from ``fasta.fai``, in file order."""
    fai = Path(f"{fasta}.fai")
    if not fai.is_file():
        raise InputError("the FASTA has no .fai index", path=fasta,
                         fix="index it first (helixflow.genome.index_genome)")
    records = {}
    for line in fai.read_text().splitlines():
        if line.strip():
            name, *numbers = line.split("\t")[:5]
            records[name] = tuple(int(x) for x in numbers)
    return records


def build_corpus(fasta: str | Path, chroms: list[str], out_dir: str | Path,
                 tokenizer: Tokenizer, window_bp: int, stride_bp: int, max_n_fraction: float,
                 shard_windows: int, split: str = "train", workers: int = 2,
                 chunk_bp: int = 1 << 20, excluded: list[str] | None = None) -> dict:
    """Tile ``chroms`` of an indexed FASTA into token shards in ``out_dir``; returns the manifest.

    Any failure removes every shard this call wrote, and an older manifest in ``out_dir`` is
    removed before anything else, so no manifest ever describes partial shards.
    """
    fasta, out_dir = Path(fasta), Path(out_dir)
    records = read_fai_records(fasta)
    absent = [c for c in chroms if c not in records]
    if absent:
        raise InputError(f"chromosomes {absent} are not in the FASTA", path=f"{fasta}.fai",
                         fix="pick chromosomes from the genome's .fai")
    if len(set(chroms)) != len(chroms):
        raise ValueError("chromosomes repeat in 'chroms'")
    if tokenizer.n_tokens(window_bp) < 1 or stride_bp < 1 or shard_windows < 1:
        raise ValueError(f"need window_bp >= k ({tokenizer.k}), stride_bp >= 1 and "
                         "shard_windows >= 1")
    if not 0 <= max_n_fraction <= 1:
        raise ValueError("max_n_fraction must lie in 0..1")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    for old in [*out_dir.glob("shard_*.npy"), *out_dir.glob("coords_*.npy")]:
        old.unlink()
    chunk_bp = max(stride_bp, chunk_bp // stride_bp * stride_bp)
    jobs = [(str(fasta), c, i, records[c], str(out_dir), tokenizer.k, tokenizer.stride,
             window_bp, stride_bp, max_n_fraction, shard_windows, chunk_bp)
            for i, c in enumerate(chroms)]
    written: list[Path] = []
    try:
        if workers > 1 and len(jobs) > 1:
            pool = ProcessPoolExecutor(min(workers, len(jobs)))
            try:
                futures = [pool.submit(_tile_job, *job) for job in jobs]
                results = [_reraise(f.result()) for f in futures]
            finally:                       # on failure: drop queued jobs, wait for running ones
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            results = [_tile_chromosome(*job) for job in jobs]
        shards = []
        for stats in results:
            for part in stats.pop("parts"):
                i = len(shards)
                for kind in ("shard", "coords"):
                    final = out_dir / f"{kind}_{i:05d}.npy"
                    os.replace(part[kind], final)
                    written.append(final)
                shards.append({"path": f"shard_{i:05d}.npy", "coords": f"coords_{i:05d}.npy",
                               "chrom": stats["chrom"], "n_windows": part["n_windows"],
                               "sha256": part["sha256"],
                               "coords_sha256": part["coords_sha256"]})
        per_chrom = {stats.pop("chrom"): stats for stats in results}
        counts = _zero_counts()
        for stats in per_chrom.values():
            _add_counts(counts, stats)
        manifest = {
            "format": FORMAT, "split": split, "tokenizer": tokenizer.manifest(),
            "window_bp": window_bp, "stride_bp": stride_bp, "max_n_fraction": max_n_fraction,
            "n_tokens": tokenizer.n_tokens(window_bp), "shard_windows": shard_windows,
            "chromosomes": list(chroms), "excluded_chromosomes": list(excluded or []),
            "counts": counts, "counts_per_chromosome": per_chrom, "shards": shards,
            "source": {"fasta": str(fasta), "fasta_sha256": sha256sum(fasta),
                       "fai_sha256": sha256sum(f"{fasta}.fai")},
            "notes": "non-ACGT bytes (IUPAC and other) are read as N; soft-masked bases as bases; "
                     "'other_bp' counts bytes that are neither ACGTN nor IUPAC",
        }
        write_json(out_dir / "manifest.json", manifest)
    except BaseException:
        for path in [*written, *out_dir.glob(".tile_*")]:
            path.unlink(missing_ok=True)
        raise
    return manifest


def verify_corpus(manifest_path: str | Path) -> dict:
    """Re-check every shard's sha256 against the manifest; returns the manifest.

    Raises :class:`InputError` naming the first missing or changed file.
    """
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise InputError("no corpus manifest", path=manifest_path,
                         fix="build the corpus (helixflow.corpus.run_pretrain_corpus)")
    manifest = read_json(manifest_path)
    root = manifest_path.parent
    for shard in manifest["shards"]:
        for key, digest_key in (("path", "sha256"), ("coords", "coords_sha256")):
            path = root / shard[key]
            if not path.is_file():
                raise InputError("corpus shard is missing", path=path,
                                 fix="rebuild the corpus (delete the directory and re-run)")
            if sha256sum(path) != shard[digest_key]:
                raise InputError("corpus shard does not match its sha256 in the manifest "
                                 "(changed or corrupt)", path=path,
                                 fix="rebuild the corpus (delete the directory and re-run)")
    return manifest


def _read_span(handle, record: tuple[int, int, int, int], start: int, end: int) -> bytes:
    """Bases [start, end) of one chromosome, newlines removed, as the FASTA has them."""
    _, offset, line_bases, line_bytes = record
    first = offset + start // line_bases * line_bytes + start % line_bases
    last = offset + (end - 1) // line_bases * line_bytes + (end - 1) % line_bases
    handle.seek(first)
    raw = handle.read(last - first + 1).translate(None, b"\r\n")
    if len(raw) != end - start:
        raise InputError(f"read {len(raw)} bases where the .fai promises {end - start}",
                         path=getattr(handle, "name", None),
                         fix="re-index the FASTA (helixflow.genome.index_genome)")
    return raw


def _zero_counts() -> dict:
    return {"bp": 0, "windows_kept": 0, "windows_dropped": 0, "soft_masked_bp": 0, "n_bp": 0,
            "other_bp": 0, "iupac": dict.fromkeys(IUPAC, 0)}


def _add_counts(total: dict, part: dict) -> None:
    """Add the counts of ``part`` into ``total`` (IUPAC per code)."""
    for key, value in part.items():
        if key == "iupac":
            for code, n in value.items():
                total["iupac"][code] += n
        elif key in total:
            total[key] += value


def _count(raw: np.ndarray, idx: np.ndarray) -> dict:
    """bp, soft-masked bp, N, IUPAC per code and other bytes of one stretch of sequence.

    ``idx`` = base indices of ``raw``; only the (few) non-ACGT bytes are histogrammed.
    """
    odd = raw[idx == 4]
    hist = np.bincount(_UPPER[odd], minlength=256)
    iupac = {code: int(hist[ord(code)]) for code in IUPAC}
    lower = np.count_nonzero(raw >= ord("a")) - np.count_nonzero(odd > ord("z"))
    n_bp = int(hist[ord("N")])
    return {"bp": len(raw), "soft_masked_bp": int(lower), "n_bp": n_bp, "iupac": iupac,
            "other_bp": len(odd) - n_bp - sum(iupac.values())}


def _tile_job(*job) -> dict | tuple:
    """:func:`_tile_chromosome` in a worker process; an InputError comes back as its fields
    (InputError's keyword-only constructor does not survive pickling)."""
    try:
        return _tile_chromosome(*job)
    except InputError as err:
        return ("InputError", err.what, None if err.path is None else str(err.path), err.line,
                err.fix)


def _reraise(result: dict | tuple) -> dict:
    if isinstance(result, tuple):
        _, what, path, line, fix = result
        raise InputError(what, path=path, line=line, fix=fix)
    return result


def _tile_chromosome(fasta: str, chrom: str, chrom_index: int,
                     record: tuple[int, int, int, int], out_dir: str, k: int, token_stride: int,
                     window_bp: int, stride_bp: int, max_n_fraction: float, shard_windows: int,
                     chunk_bp: int) -> dict:
    """Tile one chromosome into hidden temporary shard files (one worker's job).

    Chunk j owns bases [j * chunk_bp, (j + 1) * chunk_bp) for counting and the windows that
    start there; it reads on to the end of its last window.
    """
    tokenizer = Tokenizer(k, token_stride)
    length = record[0]
    n_tok = tokenizer.n_tokens(window_bp)
    stats = {"chrom": chrom, **_zero_counts()}
    writer = _ShardWriter(Path(out_dir), chrom_index, shard_windows, n_tok, tokenizer.dtype)
    max_n = int(np.floor(max_n_fraction * window_bp + 1e-9))
    with open(fasta, "rb") as handle:
        for lo in range(0, length, chunk_bp):
            owned_end = min(length, lo + chunk_bp)
            read_end = min(length, owned_end - stride_bp + window_bp)
            raw = np.frombuffer(_read_span(handle, record, lo, read_end), dtype=np.uint8)
            idx = BASE_LOOKUP[raw]
            _add_counts(stats, _count(raw[:owned_end - lo], idx[:owned_end - lo]))
            starts = np.arange(0, owned_end - lo, stride_bp)
            starts = starts[starts + window_bp <= len(raw)]
            if len(starts) == 0:
                continue
            n_cum = np.concatenate([np.zeros(1, np.int32), np.cumsum(idx == 4, dtype=np.int32)])
            keep = n_cum[starts + window_bp] - n_cum[starts] <= max_n
            stats["windows_kept"] += int(keep.sum())
            stats["windows_dropped"] += int((~keep).sum())
            kept = starts[keep]
            if len(kept):
                writer.add(tokenizer.encode_windows(idx, kept, window_bp), kept + lo)
    stats["parts"] = writer.close()
    return stats


class _ShardWriter:
    """Appends rows to the current shard's temporary .npy files; a shard holds ``shard_windows``.

    Rows go straight to disk (memory stays one chunk's rows, whatever the shard size); the
    .npy header is rewritten with the final row count when a shard closes (numpy pads headers
    so the first axis can grow without changing the header's length).
    """

    def __init__(self, out_dir: Path, chrom_index: int, shard_windows: int, n_tok: int,
                 dtype: np.dtype) -> None:
        self.out_dir, self.chrom_index, self.rows = out_dir, chrom_index, shard_windows
        self.specs = {"shard": (np.dtype(dtype), (n_tok,)), "coords": (np.dtype(np.int64), (2,))}
        self.files: dict[str, tuple[Path, BinaryIO]] = {}
        self.fill, self.parts = 0, []

    def add(self, tokens: np.ndarray, starts: np.ndarray) -> None:
        done = 0
        while done < len(tokens):
            if not self.files:
                self._open()
            take = min(self.rows - self.fill, len(tokens) - done)
            coords = np.stack([np.full(take, self.chrom_index, dtype=np.int64),
                               starts[done:done + take].astype(np.int64)], axis=1)
            for kind, rows in (("shard", tokens[done:done + take]), ("coords", coords)):
                self.files[kind][1].write(np.ascontiguousarray(rows, self.specs[kind][0]).data)
            self.fill, done = self.fill + take, done + take
            if self.fill == self.rows:
                self._close()

    def close(self) -> list[dict]:
        if self.files:
            self._close()
        return self.parts

    def _header(self, handle: BinaryIO, kind: str, n_rows: int) -> None:
        dtype, tail = self.specs[kind]
        np.lib.format.write_array_header_1_0(handle, {
            "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
            "shape": (n_rows, *tail)})

    def _open(self) -> None:
        stem = f".tile_{self.chrom_index:05d}_{len(self.parts):05d}"
        for kind in self.specs:
            path = self.out_dir / f"{stem}.{kind}.npy"
            handle = open(path, "wb")  # noqa: SIM115 (closed in _close)
            self._header(handle, kind, 0)
            self.files[kind] = (path, handle)

    def _close(self) -> None:
        part = {"n_windows": self.fill}
        for kind, (path, handle) in self.files.items():
            body_start = handle.tell() - self.fill * self.specs[kind][0].itemsize * \
                int(np.prod(self.specs[kind][1]))
            handle.seek(0)
            self._header(handle, kind, self.fill)
            if handle.tell() != body_start:
                raise RuntimeError("the .npy header changed length")  # numpy pads; never
            handle.close()
            part[kind] = str(path)
            part["sha256" if kind == "shard" else "coords_sha256"] = sha256sum(path)
        self.parts.append(part)
        self.files, self.fill = {}, 0
