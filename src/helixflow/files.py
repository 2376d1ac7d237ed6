"""File helpers shared by every stage: atomic writes, checksums, JSON/TSV records, opening
text inputs, and the rule for input paths."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import pandas as pd

from .errors import InputError

RELPATH_FIX = "give a path relative to the data mirror, without '..'"


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    A failure leaves neither a partial ``path`` nor the temporary file behind.
    The temporary name keeps ``path``'s suffix (or ``suffix``) so tools that
    dispatch on extension (numpy, matplotlib) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_tsv(path: str | Path, table: pd.DataFrame, **kwargs: Any) -> None:
    """Write a DataFrame as TSV (no index), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, **kwargs)


def relpath_problem(relpath: str) -> str | None:
    """Why ``relpath`` cannot name an input inside the data mirror (and resources/), or None.

    An absolute path would be copied from anywhere; a '..' component steps out of resources/,
    so the staged copy can be the user's own file (which Snakemake deletes before staging).
    """
    if relpath.startswith("/"):
        return "is an absolute path"
    if ".." in relpath.split("/"):
        return "has a '..' component"
    return None


def is_gzip(path: str | Path) -> bool:
    """Whether ``path`` is gzip (or bgzip) compressed, from its magic bytes, not its name."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


@contextlib.contextmanager
def open_bytes(path: str | Path) -> Iterator[BinaryIO]:
    """Open an input for reading bytes, gunzipped when its magic bytes say gzip; a damaged
    gzip read inside the ``with`` block raises :class:`InputError` naming the file."""
    path = Path(path)
    gzipped = is_gzip(path)
    try:
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as raw:
            yield raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        if not gzipped:
            raise
        raise InputError(f"truncated or corrupt gzip ({err})", path=path,
                         fix="download the file again and check its sha256 "
                             "(`gzip -t` must pass)") from err


@contextlib.contextmanager
def open_text(path: str | Path) -> Iterator[TextIO]:
    """Open a text input for reading: gzip decided by the magic bytes, UTF-8 with a leading
    byte-order mark dropped, CRLF (and CR) read as plain newlines.

    Reading bytes that are not UTF-8, or a damaged gzip, inside the ``with`` block raises
    :class:`InputError` naming the file (and the line and column of the first bad byte).
    """
    path = Path(path)
    try:
        with open_bytes(path) as raw, \
                io.TextIOWrapper(raw, encoding="utf-8-sig", newline=None) as handle:
            yield handle
    except UnicodeDecodeError as err:
        line, column = _first_undecodable(path, is_gzip(path))
        raise InputError("not UTF-8 text", path=path, line=line, column=column,
                         fix="save the file as plain UTF-8 (or ASCII) text, optionally "
                         "gzipped") from err


def _first_undecodable(path: Path, gzipped: bool) -> tuple[int | None, int | None]:
    """(line, column) of the first byte of ``path`` that is not UTF-8; read only on error."""
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return number, len(line[:err.start].decode("utf-8")) + 1
    return None, None


def bed_coordinates(fields: list[str], path: str | Path, line: int) -> tuple[int, int]:
    """(start, end) of a BED line's columns; a clear error naming the file and line when they
    are not integers."""
    try:
        return int(fields[1]), int(fields[2])
    except ValueError as err:
        raise InputError(f"coordinates are not integers ({fields[1]!r}, {fields[2]!r})",
                         path=path, line=line, fix="fix or remove the line") from err
