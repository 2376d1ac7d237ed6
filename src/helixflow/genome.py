"""Genome FASTA access: decompress/index for pyfaidx and bedtools, chromosome sizes, aliases."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pyfaidx
import pysam

from .errors import InputError
from .files import atomic_path


def index_genome(fasta_in: str | Path, fasta_out: str | Path, sizes_out: str | Path) -> dict:
    """Write an uncompressed, faidx-indexed copy of a (plain-gzip, bgzip or plain) FASTA.

    UCSC serves plain gzip, which neither pyfaidx nor bedtools can index, so the
    genome is decompressed once; ``fasta_out.fai`` and a chromosome-sizes file
    (``chrom<TAB>length``) are written beside it. Returns ``{chrom: length}``.
    """
    fasta_in, fasta_out = Path(fasta_in), Path(fasta_out)
    opener = gzip.open if _is_gzip(fasta_in) else open
    with atomic_path(fasta_out) as tmp:
        with opener(fasta_in, "rb") as src, open(tmp, "wb") as dst:
            first = src.read(1)
            if first != b">":
                raise InputError("not a FASTA file (does not start with '>')", path=fasta_in,
                                 line=1, fix="give a FASTA (.fa, .fa.gz) genome")
            dst.write(first)
            shutil.copyfileobj(src, dst, length=1 << 22)
        try:
            pysam.faidx(str(tmp))
        except pysam.SamtoolsError as err:
            raise InputError(f"cannot index the FASTA ({err})", path=fasta_in,
                             fix="lines within a record must have equal length") from err
        Path(f"{tmp}.fai").replace(f"{fasta_out}.fai")
    sizes = read_fai(f"{fasta_out}.fai")
    with atomic_path(sizes_out) as tmp:
        tmp.write_text("".join(f"{c}\t{n}\n" for c, n in sizes.items()))
    return sizes


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


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
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise InputError(f"expected 2 tab-separated columns, found {len(fields)}", path=path,
                             line=number, fix="write 'name_in_peaks<TAB>name_in_genome'")
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
