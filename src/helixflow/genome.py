"""Genome FASTA access: decompress/index for pyfaidx and bedtools, chromosome sizes, aliases."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyfaidx
import pysam

from .encode import one_hot_batch
from .errors import InputError
from .files import atomic_path, open_bytes, open_text
from .records import write_record


def index_genome(fasta_in: str | Path, fasta_out: str | Path, sizes_out: str | Path,
                 record_out: str | Path | None = None) -> dict:
    """Write an uncompressed, faidx-indexed copy of a (plain-gzip, bgzip or plain) FASTA.

    UCSC serves plain gzip, which neither pyfaidx nor bedtools can index, so the
    genome is decompressed once; ``fasta_out.fai`` and a chromosome-sizes file
    (``chrom<TAB>length``) are written beside it. Returns ``{chrom: length}``.

    Every sequence letter is read once: CRLF line endings become LF in the copy, and the
    N, other IUPAC ambiguity codes and soft-masked (lower-case) bases are counted, printed
    to stderr and, with ``record_out``, written to that JSON record (``results.letters``).

    Raises :class:`InputError` (and leaves no output behind) for a truncated or corrupt
    gzip, a record name used twice, a record with no sequence, a letter that is not an
    IUPAC nucleotide code, or ragged lines.
    """
    fasta_in, fasta_out = Path(fasta_in), Path(fasta_out)
    with atomic_path(fasta_out) as tmp:
        with open_bytes(fasta_in) as src, open(tmp, "wb") as dst:
            letters = _copy_checked(src, dst, fasta_in)
        try:
            pysam.faidx(str(tmp))
        except pysam.SamtoolsError as err:
            raise InputError(f"cannot index the FASTA ({err})", path=fasta_in,
                             fix="lines within a record must have equal length") from err
        Path(f"{tmp}.fai").replace(f"{fasta_out}.fai")
    sizes = read_fai(f"{fasta_out}.fai")
    with atomic_path(sizes_out) as tmp:
        tmp.write_text("".join(f"{c}\t{n}\n" for c, n in sizes.items()))
    print(f"helixflow index-genome: {letters['N']:,} N, {letters['ambiguous']:,} other IUPAC "
          f"ambiguity codes, {letters['soft_masked']:,} soft-masked (lower-case) bases"
          + (f"; {letters['crlf_lines']:,} CRLF line endings written as LF"
             if letters["crlf_lines"] else ""), file=sys.stderr)
    if record_out is not None:
        write_record(record_out, "index_genome", {}, {"fasta": fasta_in},
                     {"chromosomes": len(sizes), "bp": sum(sizes.values()), "letters": letters})
    return sizes


BLOCK = 1 << 22  # bytes copied per read when indexing
IUPAC = b"ACGTNRYSWKMBDHV"  # the nucleotide codes a genome may hold, in either case
_SEQUENCE_BYTES = IUPAC + IUPAC.lower() + b"\n"
_LETTER_FIX = ("write sequences with A C G T N and the IUPAC ambiguity codes R Y S W K M B D H "
               "V only (either case): no gaps '-', '*', digits or spaces")


def _copy_checked(src: BinaryIO, dst: BinaryIO, path: Path) -> dict:
    """Copy a FASTA block by block with CRLF made LF, checking record names, non-empty
    sequences and letters; returns the letter counts (:meth:`_RecordChecker.letter_counts`)."""
    first = src.read(1)
    if first != b">":
        raise InputError("not a FASTA file (does not start with '>')", path=path,
                         line=1, fix="give a FASTA (.fa, .fa.gz) genome")
    dst.write(first)
    checker = _RecordChecker(path)
    checker.feed(first)
    held, crlf = b"", 0             # a final '\r' waits for the next block's '\n'
    while block := src.read(BLOCK):
        block, held = held + block, b""
        if block.endswith(b"\r"):
            block, held = block[:-1], b"\r"
        if b"\r\n" in block:
            crlf += block.count(b"\r\n")
            block = block.replace(b"\r\n", b"\n")
        checker.feed(block)
        dst.write(block)
    checker.feed(held)
    dst.write(held)
    checker.finish()
    return checker.letter_counts() | {"crlf_lines": crlf}


class _RecordChecker:
    """Streams FASTA bytes and tracks line numbers, record names and whether each has bases.

    Only header lines are looked at in Python; sequence letters are checked with
    bytes.translate and counted with numpy, a block at a time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.line = 1                 # line number of the next byte
        self.line_start = True        # the next byte starts a line
        self.column = 0               # bytes of the current line before the next byte
        self.header: bytes | None = None   # header text read so far, while inside a header
        self.header_line = 0
        self.names: dict[str, int] = {}    # record name -> header line
        self.current: str | None = None
        self.has_bases = False
        self.counts: dict[str, list[int]] = {}  # record -> [N, other ambiguity, lower case]

    def feed(self, block: bytes) -> None:
        pos, n = 0, len(block)
        while pos < n:
            if self.header is not None:              # inside a header line
                end = block.find(b"\n", pos)
                if end < 0:
                    self.header += block[pos:]
                    return
                self.header += block[pos:end]
                self._start_record()
                self.line, self.line_start, self.column, pos = self.line + 1, True, 0, end + 1
                continue
            if self.line_start and block[pos] == ord(">"):
                self._end_record()
                self.header, self.header_line, pos = b"", self.line, pos + 1
                continue
            nxt = block.find(b"\n>", pos)
            stop = n if nxt < 0 else nxt + 1
            sequence = block[pos:stop]
            self._count_letters(sequence)
            if not self.has_bases and sequence.strip():
                self.has_bases = True
            self.line += sequence.count(b"\n")
            self.line_start = sequence.endswith(b"\n")
            last_newline = sequence.rfind(b"\n")
            self.column = (len(sequence) - last_newline - 1 if last_newline >= 0
                           else self.column + len(sequence))
            pos = stop

    def finish(self) -> None:
        if self.header is not None:
            self._start_record()
        self._end_record()

    def _start_record(self) -> None:
        text = self.header.decode("ascii", errors="replace").strip()
        self.header = None
        name = text.split()[0] if text else ""
        if not name:
            raise InputError("a record header has no name", path=self.path,
                             line=self.header_line, fix="write '>name' on every header line")
        if name in self.names:
            raise InputError(f"chromosome name '{name}' appears twice (first at line "
                             f"{self.names[name]})", path=self.path, line=self.header_line,
                             fix="remove the duplicate record or rename it")
        self.names[name] = self.header_line
        self.current, self.has_bases = name, False
        self.counts[name] = [0, 0, 0]

    def _count_letters(self, sequence: bytes) -> None:
        """Refuse a byte that is not an IUPAC code (or a newline); count N, other ambiguity
        codes and lower-case letters for the current record."""
        if bad := sequence.translate(None, _SEQUENCE_BYTES):
            self._refuse_letter(sequence, sequence.index(bad[:1]))
        codes = np.frombuffer(sequence, dtype=np.uint8)
        upper = codes & 0xDF                       # a-z to A-Z; newlines stay
        n = int(np.count_nonzero(upper == ord("N")))
        acgt = sum(int(np.count_nonzero(upper == c)) for c in b"ACGT")
        counts = self.counts[self.current]
        counts[0] += n
        counts[1] += len(sequence) - sequence.count(b"\n") - acgt - n
        counts[2] += int(np.count_nonzero(codes >= ord("a")))

    def _refuse_letter(self, sequence: bytes, index: int) -> None:
        line = self.line + sequence.count(b"\n", 0, index)
        last_newline = sequence.rfind(b"\n", 0, index)
        column = index - last_newline if last_newline >= 0 else self.column + index + 1
        byte = sequence[index]
        shown = repr(chr(byte)) if 32 <= byte < 127 else f"byte 0x{byte:02x}"
        raise InputError(f"record '{self.current}' has {shown}, which is not an IUPAC "
                         "nucleotide code", path=self.path, line=line, column=column,
                         fix=_LETTER_FIX)

    def letter_counts(self) -> dict:
        """Genome totals and per-record counts of N, other IUPAC ambiguity codes and
        soft-masked (lower-case) bases."""
        keys = ("N", "ambiguous", "soft_masked")
        per_record = {name: dict(zip(keys, c, strict=True)) for name, c in self.counts.items()}
        totals = {k: sum(c[i] for c in self.counts.values()) for i, k in enumerate(keys)}
        return totals | {"per_chromosome": per_record}

    def _end_record(self) -> None:
        if self.current is not None and not self.has_bases:
            raise InputError(f"record '{self.current}' has an empty sequence", path=self.path,
                             line=self.names[self.current],
                             fix="remove the record or supply its sequence")


def read_fai(path: str | Path) -> dict[str, int]:
    """``{chrom: length}`` from a .fai or chrom-sizes file, in file order."""
    sizes: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            name, length = line.split("\t")[:2]
            sizes[name] = int(length)
    return sizes


def read_aliases(path: str | Path | None) -> dict[str, str]:
    """Chromosome aliases ``{name in peaks: name in genome}`` from a 2-column TSV."""
    if not path:
        return {}
    aliases: dict[str, str] = {}
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise InputError(f"expected 2 tab-separated columns, found {len(fields)}",
                                 path=path, line=number,
                                 fix="write 'name_in_peaks<TAB>name_in_genome'")
            aliases[fields[0]] = fields[1]
    return aliases


class Genome:
    """Random access to an indexed FASTA; sequences come back upper-case."""

    def __init__(self, fasta: str | Path) -> None:
        self.path = Path(fasta)
        self._fasta = pyfaidx.Fasta(str(fasta), as_raw=True, sequence_always_upper=True,
                                    rebuild=False)
        self.sizes = {name: len(record) for name, record in self._fasta.items()}

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Sequence of the 0-based half-open interval [start, end)."""
        return self._fasta[chrom][start:end]

    def close(self) -> None:
        self._fasta.close()


def iter_one_hot_windows(fasta: str | Path, windows: pd.DataFrame,
                         chunk: int = 4096) -> Iterator[np.ndarray]:
    """One-hot sequences of ``windows`` (chrom, start, end; one width), ``chunk`` rows at a time.

    Yields uint8 arrays shape=(m, 4, width), m <= chunk, in table order: memory follows the
    chunk, not the number of windows.
    """
    rows = list(zip(windows["chrom"], windows["start"], windows["end"], strict=True))
    genome = Genome(fasta)
    try:
        for i in range(0, len(rows), chunk):
            yield one_hot_batch([genome.fetch(c, s, e) for c, s, e in rows[i:i + chunk]])
    finally:
        genome.close()


def one_hot_windows(fasta: str | Path, windows: pd.DataFrame, width: int | None = None,
                    chunk: int = 4096) -> np.ndarray:
    """One-hot sequences of ``windows`` (chrom, start, end; one width), read in chunks.

    Returns uint8, shape=(n, 4, width); ``width`` is only needed for an empty table.
    """
    if width is None:
        width = int((windows["end"] - windows["start"]).iloc[0]) if len(windows) else 0
    out = np.zeros((len(windows), 4, width), dtype=np.uint8)
    for i, block in enumerate(iter_one_hot_windows(fasta, windows, chunk)):
        out[i * chunk:i * chunk + len(block)] = block
    return out
