"""Which helixflow source a ``helixflow COMMAND`` runs, found from the import graph.

Each rule passes :func:`command_digest` of its command as a param, so Snakemake re-runs the
rule when (and only when) that code changes. The code of a command is

* in ``cli.py``: its ``cmd_*`` function, its block of ``build_parser`` (arguments and their
  defaults), the module-level helpers and constants those use (``_json``, ``_pairs``, ...)
  and what every command runs (the module's imports, docstring and other top-level
  statements, ``main``, the rest of ``build_parser``);
* every helixflow module in the transitive closure of the imports of that code. An import
  anywhere in a module counts (top level or inside a function: it may run), and importing
  ``helixflow.models.cnn`` runs ``helixflow/__init__.py`` and ``models/__init__.py`` too.

Read with :mod:`ast` only: nothing is imported, so Snakemake's start-up does not import torch.

A module is named by its path under the package without ``.py``, as
:func:`helixflow.records.code_digest` takes it: ``"train"``, ``"models/cnn"``, and
``"__init__"``, ``"models/__init__"`` for the packages' own code.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PACKAGE = "helixflow"
ROOT = Path(__file__).resolve().parent  # the package's source directory (src/helixflow)
ENTRY = "main"                      # cli.py's entry point (pyproject: helixflow.cli:main)
PARSER = "build_parser"             # cli.py's parser: one block of statements per command


@dataclass(frozen=True)
class Source:
    """One parsed module: its bytes, tree, and what it imports anywhere."""

    data: bytes
    text: str
    tree: ast.Module
    internal: frozenset[str]   # helixflow modules (resolved names, see module docstring)
    external: frozenset[str]   # third-party/stdlib top-level names, optional ones left out


@dataclass(frozen=True)
class CommandCode:
    """The code ``helixflow COMMAND`` runs."""

    command: str
    function: str                          # its function in cli.py
    cli: tuple[tuple[str, str], ...]       # (what, source text) of the cli.py code it runs
    modules: tuple[str, ...]               # helixflow modules it may import, sorted ("cli" too)
    external: frozenset[str]               # top-level non-helixflow names those import
    digest: str                            # short sha256 of cli and of the modules' source


# ------------------------------------------------------------------------------- imports


def _optional(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``try: ... except ImportError:`` bodies (optional extras)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                               "ModuleNotFoundError")
                for h in node.handlers):
            guarded |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return guarded


def imports(tree: ast.AST, package: str = PACKAGE) -> tuple[set[str], set[str]]:
    """(helixflow dotted names, top-level other names) that ``tree`` imports, anywhere in it.

    ``package``: the package the code lives in (``"helixflow.models"`` for
    ``models/cnn.py`` and ``models/__init__.py``), against which relative imports resolve.
    The helixflow names are candidates (``from .x import y`` gives ``helixflow.x`` and
    ``helixflow.x.y``: either may be a module); :func:`resolve` keeps the real ones.
    Third-party imports guarded by ``except ImportError`` are optional and left out; helixflow
    ones never are.
    """
    internal, external = set(), set()
    optional = _optional(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level > len(parts):
                    continue
                base = parts[: len(parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == PACKAGE or module.startswith(PACKAGE + "."):
                internal |= {module} | {f"{module}.{a.name}" for a in node.names}
            elif id(node) not in optional:
                external.add(module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    internal.add(alias.name)
                elif id(node) not in optional:
                    external.add(alias.name.split(".")[0])
    return internal, external


def resolve(dotted: str, root: Path = ROOT) -> str | None:
    """``"helixflow.models.cnn"`` → ``"models/cnn"``; a package → its ``__init__``; None when
    the name is no module under ``root`` (an attribute: ``helixflow.train.predict``)."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    rel = "/".join(parts[1:])
    if rel and (root / f"{rel}.py").is_file():
        return rel
    if (root / rel / "__init__.py").is_file():
        return f"{rel}/__init__" if rel else "__init__"
    return None


def _package_of(module: str) -> str:
    """The dotted package a module's relative imports resolve against."""
    return ".".join([PACKAGE, *module.split("/")[:-1]])


def _parents(module: str) -> set[str]:
    """The packages whose ``__init__`` runs before ``module``: ``models/cnn`` →
    ``__init__``, ``models/__init__``."""
    parts = module.split("/")[:-1]
    return {"/".join([*parts[:i], "__init__"]) for i in range(len(parts) + 1)} - {module}


def _resolved(candidates: Iterable[str], root: Path) -> set[str]:
    found = {m for name in candidates if (m := resolve(name, root))}
    return found | {p for m in found for p in _parents(m)}


@lru_cache(maxsize=1024)
def _parse(path: Path, module: str, root: Path, _mtime_ns: int, _size: int) -> Source:
    data = path.read_bytes()
    text = data.decode()
    tree = ast.parse(text, filename=str(path))
    internal, external = imports(tree, _package_of(module))
    return Source(data, text, tree, frozenset(_resolved(internal, root)), frozenset(external))


def source(module: str, root: Path = ROOT) -> Source:
    """The parsed module (cached until the file changes)."""
    path = root / f"{module}.py"
    stat = path.stat()
    return _parse(path, module, root, stat.st_mtime_ns, stat.st_size)


def closure(modules: Iterable[str], root: Path = ROOT,
            opaque: Iterable[str] = ()) -> tuple[str, ...]:
    """``modules`` and every helixflow module they import, transitively, sorted (with the
    packages' ``__init__`` that importing them runs). The imports of ``opaque`` modules are not
    followed (cli.py: each command runs only its own part of it)."""
    opaque = set(opaque)
    todo = set(modules)
    todo |= {p for m in todo for p in _parents(m)}
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        seen.add(module)
        if module not in opaque:
            todo |= source(module, root).internal - seen
    return tuple(sorted(seen))


@lru_cache(maxsize=64)
def module_closure(*modules: str, root: Path | None = None) -> tuple[str, ...]:
    """:func:`closure` of module names (``"pretrain"``), cached per process."""
    return closure(modules, root or ROOT)


# ---------------------------------------------------------------------------- cli.py


def _names(nodes: Iterable[ast.AST]) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def _registration(node: ast.AST, functions: set[str]) -> tuple[str, str] | None:
    """(command, function) when ``node`` is ``("train", cmd_train, ...)``: the arguments of
    ``add("train", cmd_train, "help")`` or one row of a loop over such rows."""
    items = node.args if isinstance(node, ast.Call) else getattr(node, "elts", None)
    if items and len(items) >= 2 and isinstance(items[0], ast.Constant) and \
            isinstance(items[0].value, str) and isinstance(items[1], ast.Name) and \
            items[1].id in functions:
        return items[0].value, items[1].id
    return None


def _registers(stmt: ast.stmt, functions: set[str]) -> dict[str, str]:
    """{command: function} that one statement of ``build_parser`` registers:
    ``p = add("train", cmd_train, "...")`` or ``for name, func, help in (("train", cmd_train,
    "..."), ...): p = add(name, func, help)``."""
    if isinstance(stmt, ast.Assign | ast.Expr) and isinstance(stmt.value, ast.Call):
        found = _registration(stmt.value, functions)
        return dict([found]) if found else {}
    if isinstance(stmt, ast.For) and isinstance(stmt.iter, ast.Tuple | ast.List):
        rows = [_registration(row, functions) for row in stmt.iter.elts]
        return dict(rows) if rows and all(rows) else {}
    return {}


@dataclass(frozen=True)
class _Cli:
    lines: tuple[bytes, ...]                     # cli.py's lines, to cut statements from
    defs: dict[str, ast.stmt]                    # module-level functions, classes, constants
    common: tuple[ast.stmt, ...]                 # run by every command
    blocks: dict[str, tuple[str, tuple[ast.stmt, ...]]]  # command → (function, its parser part)


@lru_cache(maxsize=16)
def _cli(src: Source) -> _Cli:
    defs: dict[str, ast.stmt] = {}
    common: list[ast.stmt] = []
    for stmt in src.tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign | ast.AnnAssign):   # constants: when referenced
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for name in _names(targets):
                defs[name] = stmt
        else:          # docstring, imports, ``if __name__ == "__main__"``: every command runs
            common.append(stmt)
    blocks: dict[str, tuple[str, list[ast.stmt]]] = {}
    parser = defs.get(PARSER)
    if isinstance(parser, ast.FunctionDef):
        functions = {n for n, d in defs.items() if isinstance(d, ast.FunctionDef)}
        current: list[str] = []        # the commands the statements now configure
        for stmt in parser.body:
            registered = _registers(stmt, functions)
            if registered:
                current = list(registered)
                blocks |= {c: (f, []) for c, f in registered.items()}
            if isinstance(stmt, ast.Return):
                current = []
            if current:
                for command in current:
                    blocks[command][1].append(stmt)
            else:       # the parser itself, the ``add`` helper, ``return``: every command's
                common.append(stmt)
    if ENTRY in defs:
        common.append(defs[ENTRY])
    return _Cli(tuple(src.data.splitlines(keepends=True)), defs, tuple(common),
                {c: (f, tuple(b)) for c, (f, b) in blocks.items()})


def _segment(lines: tuple[bytes, ...], node: ast.AST) -> str:
    """The source text of ``node`` (``ast.get_source_segment`` without re-splitting the file
    for each statement; offsets are in UTF-8 bytes)."""
    first, last = node.lineno - 1, node.end_lineno - 1
    if first == last:
        return lines[first][node.col_offset:node.end_col_offset].decode()
    return b"".join([lines[first][node.col_offset:], *lines[first + 1:last],
                     lines[last][:node.end_col_offset]]).decode()


def _cli_code(command: str, root: Path) -> tuple[str, tuple[tuple[str, str], ...],
                                                 list[ast.stmt]]:
    """(function, ((what, source), ...), statements) of the cli.py code ``helixflow command``
    runs: its function, its part of the parser, the common code and the helpers these use."""
    cli = _cli(source("cli", root))
    function, block = cli.blocks.get(command, ("cmd_" + command.replace("-", "_"), ()))
    if not isinstance(cli.defs.get(function), ast.FunctionDef):
        raise KeyError(f"helixflow has no command '{command}' (cli.py defines no {function} "
                       f"and registers none in {PARSER})")
    parts: list[tuple[str, list[ast.stmt]]] = [
        (f"def {function}", [cli.defs[function]]),
        (f"{PARSER}: {command}", list(block)),
        ("common", list(cli.common)),
    ]
    # module-level helpers and constants these use, transitively. The parser is in parts
    # already, and the other commands' functions named in a shared ``for`` block are theirs.
    others = {f for f, _ in cli.blocks.values()} - {function}
    done = {function, PARSER, ENTRY}
    todo = sorted((_names(n for _, nodes in parts for n in nodes) & cli.defs.keys())
                  - done - others)
    while todo:
        name = todo.pop(0)
        if name in done:
            continue
        done.add(name)
        parts.append((f"helper {name}", [cli.defs[name]]))
        todo += sorted((_names([cli.defs[name]]) & cli.defs.keys()) - done)
    nodes = [n for _, stmts in parts for n in stmts]
    text = tuple((what, "\n".join(_segment(cli.lines, n) for n in stmts))
                 for what, stmts in parts)
    return function, text, nodes


@lru_cache(maxsize=256)
def _command_code(command: str, root: Path) -> CommandCode:
    function, cli_text, nodes = _cli_code(command, root)
    internal, external = imports(ast.Module(body=nodes, type_ignores=[]), PACKAGE)
    modules = closure(_resolved(internal, root) | {"cli"}, root, opaque={"cli"})
    for module in modules:
        if module != "cli":
            external |= source(module, root).external
    digest = hashlib.sha256()
    for what, text in cli_text:
        digest.update(f"cli.py {what}\0{text}\0".encode())
    for module in modules:
        if module != "cli":               # only the parts of cli.py above
            digest.update(f"{module}\0".encode() + source(module, root).data + b"\0")
    return CommandCode(command, function, cli_text, modules, frozenset(external),
                       digest.hexdigest()[:16])


def command_code(command: str, root: Path | None = None) -> CommandCode:
    """The code ``helixflow COMMAND`` runs (``command`` as typed: ``"kmer-baseline"``).

    ``root``: the package's source directory (default: this one's). Cached per process:
    :func:`clear_cache` after editing a file in the same process.
    """
    return _command_code(command, (root or ROOT).resolve())


def command_digest(*commands: str, root: Path | None = None) -> str:
    """Short sha256 of the code of one or more ``helixflow`` commands (a rule's param)."""
    digests = [command_code(c, root).digest for c in commands]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256(" ".join(sorted(digests)).encode()).hexdigest()[:16]


def cli_commands(root: Path | None = None) -> tuple[str, ...]:
    """Every sub-command ``build_parser`` registers, in its order."""
    return tuple(_cli(source("cli", (root or ROOT).resolve())).blocks)


def command_digests(root: Path | None = None) -> dict[str, str]:
    """{command: :func:`command_digest`} of every sub-command: the workflow's ``CODE``."""
    return {c: command_digest(c, root=root) for c in cli_commands(root)}


def clear_cache() -> None:
    """Forget the cached commands and closures, after editing a file in the same process (the
    files' parses are cached by size and mtime: an edited file is parsed again anyway)."""
    for cached in (_command_code, module_closure):
        cached.cache_clear()
