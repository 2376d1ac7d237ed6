"""Stage an input: copy it from a local mirror or download it, verify sha256, move into place."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from pathlib import Path

from .errors import InputError
from .files import RELPATH_FIX, atomic_path, relpath_problem, sha256sum


def stage_input(relpath: str, out: str | Path, *, mirror: str | Path | None,
                url: str | None, sha256: str | None) -> str:
    """Put the input ``relpath`` at ``out`` and return its sha256.

    The mirror (``mirror/relpath``) is used when it has the file; otherwise the
    file is downloaded from ``url``. A checksum mismatch fails and leaves nothing.
    A ``relpath`` that is absolute or has a '..' component, or a mirror file that is a
    link to outside the mirror, is refused before anything is read or written.
    """
    if problem := relpath_problem(relpath):
        raise InputError(f"input path '{relpath}' {problem}", fix=RELPATH_FIX)
    source = _mirror_file(relpath, mirror) if mirror else None
    downloaded = False
    with atomic_path(out) as tmp:
        if source is not None and source.is_file():
            print(f"helixflow stage: {relpath} from mirror {source}", file=sys.stderr)
            shutil.copyfile(source, tmp)
        elif url:
            print(f"helixflow stage: {relpath} from {url}", file=sys.stderr)
            try:
                with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
                    shutil.copyfileobj(response, f, length=1 << 20)
                downloaded = True
            except OSError as err:
                raise InputError(
                    f"input '{relpath}' is not in the mirror and downloading {url} failed ({err})",
                    path=source, fix="put the file in the mirror directory ('data_mirror' in "
                    "the config) or check the URL and the network") from err
        else:
            raise InputError(f"input '{relpath}' is not in the mirror and has no url", path=source,
                             fix="put the file there, set 'data_mirror' in the config, "
                             "or give a url for it")
        digest = sha256sum(tmp)
        if downloaded and not sha256:     # a url without its checksum: the digest to pin
            print(f"helixflow stage: {relpath} has no pinned checksum; its sha256 is {digest}: "
                  "pin it in the config (sha256: ...) so that the next download is checked",
                  file=sys.stderr)
        if sha256 and digest != sha256:
            raise InputError(f"sha256 of '{relpath}' is {digest}, the config expects {sha256}",
                             path=source, fix="the file changed or is the wrong one; fetch it "
                             "again or update the sha256 in the config")
    return digest


def _mirror_file(relpath: str, mirror: str | Path) -> Path:
    """``mirror/relpath``; refused when it is (or lies under) a link that leads outside."""
    source = Path(mirror) / relpath
    root = Path(mirror).resolve()
    if source.exists() and not source.resolve().is_relative_to(root):
        raise InputError(f"input '{relpath}' is a link to {source.resolve()}, outside the "
                         f"mirror {root}", path=source,
                         fix="copy the file into the mirror instead of linking to it")
    return source
