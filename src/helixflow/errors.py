"""One error type whose message a person can act on: file, line, what, fix."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input found before any work started.

    The message reads ``helixflow: FILE line N: WHAT; FIX`` (``line N column C`` where a
    column is given).
    """

    def __init__(self, what: str, *, path: str | Path | None = None,
                 line: int | None = None, fix: str | None = None,
                 column: int | None = None) -> None:
        self.path, self.line, self.what, self.fix = path, line, what, fix
        self.column = column
        where = ""
        if path is not None:
            where = (f"{path}" + (f" line {line}" if line is not None else "")
                     + (f" column {column}" if column is not None else "") + ": ")
        super().__init__(f"helixflow: {where}{what}" + (f"; {fix}" if fix else ""))

    def __reduce__(self):   # keep the fields (and one prefix) across processes
        return _rebuild, (self.what, self.path, self.line, self.fix, self.column)


def _rebuild(what: str, path: str | Path | None, line: int | None, fix: str | None,
             column: int | None = None) -> InputError:
    return InputError(what, path=path, line=line, fix=fix, column=column)
