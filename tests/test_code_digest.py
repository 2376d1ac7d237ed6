"""Each rule's ``code`` param is the digest of the code its ``helixflow COMMAND`` runs, found
from the import graph (helixflow.code_graph): editing a module re-runs exactly the rules whose
commands import it, directly or not."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from modulefinder import ModuleFinder
from pathlib import Path

import pytest
from test_envs import RULE
from tiny_project import REPO, make_project, snakemake

from helixflow.cli import build_parser
from helixflow.code_graph import (
    clear_cache,
    cli_commands,
    command_code,
    command_digest,
    command_digests,
    module_closure,
    resolve,
)

SRC = REPO / "src" / "helixflow"
# Rules without a ``params:`` block run only these commands; they pass no code digest (yet).
NO_CODE_PARAM: set[str] = set()   # every rule that runs a command names its digest


def rules(repo: Path = REPO) -> dict[str, tuple[list[str], list[str]]]:
    """{rule: (helixflow commands its shell runs, its ``code=`` param expressions)}."""
    found = {}
    for smk in sorted((repo / "workflow/rules").glob("*.smk")):
        for name, body in RULE.findall(smk.read_text()):
            shell = body[body.index("shell:"):] if "shell:" in body else ""
            launcher = re.search(r"launcher=(.*?)\n\s*\w+=", body, re.S)
            assert "{params.launcher}" not in shell or "helixflow" in launcher.group(1), name
            commands = re.findall(r"(?:\bhelixflow|\{params\.launcher\}) ([a-z][a-z-]*)", shell)
            found[name] = (commands, re.findall(r"^\s*code=(.*?),?\s*$", body, re.M))
    return found


RULES = rules()
USED = sorted({c for commands, _ in RULES.values() for c in commands})


def modules(root: Path) -> list[str]:
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.py"))


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """A copy of src/helixflow to edit."""
    root = tmp_path_factory.mktemp("src") / "helixflow"
    shutil.copytree(SRC, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def digests(root: Path) -> dict[str, str]:
    clear_cache()
    return {c: command_digest(c, root=root) for c in USED}


# ------------------------------------------------------------------ the graph


def test_rules_run_known_commands():
    assert len(RULES) >= 30 and {"train", "kmer-baseline", "pretrain", "stage"} <= set(USED)
    assert set(USED) <= set(cli_commands())


def test_parser_blocks_are_the_cli_commands():
    """The AST's reading of build_parser finds the sub-commands argparse registers."""
    sub = next(a for a in build_parser()._actions if a.dest == "stage")
    assert set(cli_commands()) == set(sub.choices)
    for command, parser in sub.choices.items():
        assert command_code(command).function == parser.get_default("func").__name__


def test_closures_hold_what_the_old_lists_missed():
    multitask = set(command_code("multitask").modules)
    assert {"motif_report", "train", "shards", "seeding", "multitask", "models/multitask"} \
        <= multitask
    for command in cli_commands():
        assert {"cli", "__init__", "errors"} <= set(command_code(command).modules), command
    assert "kmers" in command_code("kmer-baseline").modules
    assert "kmers" not in command_code("train").modules
    # cmd_train's helper _write_predictions imports helixflow.evaluate
    assert "helper _write_predictions" in dict(command_code("train").cli)
    assert "evaluate" in command_code("train").modules


def test_import_graph_matches_modulefinder():
    """An independent walk (the standard library's, over bytecode) finds the same closure
    for every module."""
    for module in modules(SRC):
        dotted = ".".join(["helixflow", *module.split("/")]).removesuffix(".__init__")
        finder = ModuleFinder(path=[str(SRC.parent)])
        finder.import_hook(dotted)
        found = {resolve(m) for m in finder.modules if m.split(".")[0] == "helixflow"}
        assert found == set(module_closure(module)), module


def test_imports_of_every_form_are_followed(tmp_path):
    root = tmp_path / "helixflow"
    (root / "sub").mkdir(parents=True)
    for name, text in {
        "__init__": "", "cli": "from .a import x\n\ndef cmd_go(a):\n    import helixflow.b\n",
        "a": "from . import c\nx = 1\n", "b": "def f():\n    from .sub.d import y\n",
        "c": "try:\n    from .e import z\nexcept ImportError:\n    z = None\n",
        "e": "import numpy\n", "sub/__init__": "", "sub/d": "from .. import f\ny = 2\n",
        "f": "from helixflow import g\n", "g": "", "unrelated": "from . import a\n",
    }.items():
        (root / f"{name}.py").write_text(text)
    code = command_code("go", root=root)
    assert code.modules == ("__init__", "a", "b", "c", "cli", "e", "f", "g", "sub/__init__",
                            "sub/d")
    assert code.external == {"numpy"}
    with pytest.raises(KeyError, match="no command 'stop'"):
        command_code("stop", root=root)


def test_digest_is_stable_and_cached():
    clear_cache()
    first = command_digests()
    assert first == command_digests() and set(first) == set(cli_commands())
    assert len(set(first.values())) == len(first)        # no two commands share code exactly
    assert command_digest("train", "kmer-baseline") == command_digest("kmer-baseline", "train")


# --------------------------------------------------------------------- edits


def test_editing_a_module_changes_exactly_the_commands_that_import_it(copy):
    before = digests(copy)
    assert before == {c: command_digest(c, root=SRC) for c in USED}   # the same code
    closures = {c: set(command_code(c, root=copy).modules) for c in USED}
    for module in modules(copy):
        if module == "cli":
            continue                       # only each command's part of it counts: below
        path = copy / f"{module}.py"
        original = path.read_bytes()
        path.write_bytes(original + b"\n# an edit\n")
        try:
            after = digests(copy)
        finally:
            path.write_bytes(original)
        changed = {c for c in USED if after[c] != before[c]}
        assert changed == {c for c in USED if module in closures[c]}, module
    assert digests(copy) == before


def _inside(function: str) -> tuple[str, str]:
    """(old, new): a comment added as the first line of a cli.py function's body."""
    header = re.search(rf"^def {function}\(.*\n", (SRC / "cli.py").read_text(), re.M).group(0)
    return header, header + "    # an edit\n"


@pytest.mark.parametrize("old, new, expected", [
    # the command's function (a comment inside it counts: its source text is hashed)
    (*_inside("cmd_kmer_baseline"), {"kmer-baseline"}),
    (*_inside("cmd_sweep_summary"), {"sweep-summary"}),
    # its arguments in build_parser (here a loop shared by train and sweep-arm: both)
    ('p.add_argument("--threads", type=int, default=1)\n        p.add_argument("--params", '
     'type=_json, required=True)', 'p.add_argument("--threads", type=int, default=2)\n'
     '        p.add_argument("--params", type=_json, required=True)', {"train", "sweep-arm"}),
    # a helper some commands call
    (*_inside("_write_predictions"), {"train", "kmer-baseline", "pwm-baseline"}),
    # what every command runs
    (*_inside("main"), "all"),
    # a comment after the last statement is no command's code
    (None, "\n# an edit at the end\n", set()),
], ids=["function", "other-function", "parser", "helper", "main", "end"])
def test_editing_cli_changes_the_commands_that_run_the_edit(copy, old, new, expected):
    path = copy / "cli.py"
    original = path.read_text()
    before = digests(copy)
    assert old is None or original.count(old) == 1, old
    path.write_text(original + new if old is None else original.replace(old, new))
    try:
        after = digests(copy)
    finally:
        path.write_text(original)
    changed = {c for c in USED if after[c] != before[c]}
    assert changed == (set(USED) if expected == "all" else expected)


# ---------------------------------------------------------------- the workflow


def test_every_code_param_is_its_commands_derived_digest():
    for rule, (commands, code) in RULES.items():
        if code:
            assert len(commands) == 1 and code == [f'CODE["{commands[0]}"]'], (rule, code)
        else:
            assert set(commands) <= NO_CODE_PARAM, f"rule {rule} runs {commands}, no code="
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert re.search(r"^CODE = command_digests\(\)$", common, re.M)
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        assert "code_digest(" not in smk.read_text(), smk.name   # no hand-kept module list


# A finished tiny project faked cheaply: every output an empty file, ``snakemake --touch``
# records the params (code digests included) as if the jobs had run.


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(project, code copy, {output: rule}) of the tiny project, up to date."""
    root = tmp_path_factory.mktemp("digest_project")
    project, code = root / "project", root / "code"
    project.mkdir()
    code.mkdir()
    make_project(project)
    for part in ("Snakefile", "workflow", "envs"):
        source = REPO / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, code / part)
    shutil.copytree(SRC, code / "src/helixflow", ignore=shutil.ignore_patterns("__pycache__"))
    result = run(project, code, "-D")
    table = [line.split("\t") for line in result.stdout.splitlines()[1:] if "\t" in line]
    outputs = {row[0]: row[2] for row in table}
    for output in outputs:
        (project / output).parent.mkdir(parents=True, exist_ok=True)
        (project / output).touch()
    run(project, code, "--touch")
    assert reruns(project, code) == ({}, set())
    return project, code, outputs


def run(project: Path, code: Path, *args: str):
    result = snakemake(project, *args, snakefile=code / "Snakefile",
                       extra_env={"PYTHONPATH": str(code / "src")})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def reruns(project: Path, code: Path) -> tuple[dict[str, str], set[str]]:
    """({rule: reason} of every planned job, rules re-run because their params changed)."""
    result = run(project, code, "-n")
    jobs = dict(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    reason: (.*)$", result.stdout,
                           re.M))
    return jobs, {rule for rule, reason in jobs.items() if reason.startswith("Params have")}


@pytest.mark.workflow
@pytest.mark.parametrize("module, edit, planned, not_planned", [
    ("kmers", lambda text: text + "\n# an edit\n", {"kmer_baseline", "evaluate"},
     {"train_cnn", "sweep_arm", "motifs", "pwm_baseline", "windows", "shards"}),
    ("cli", lambda text: text.replace(*_inside("cmd_train")), {"train_cnn", "motifs"},
     {"sweep_arm", "kmer_baseline", "pwm_baseline", "windows", "shards"}),
], ids=["kmers", "cmd_train"])
def test_snakemake_reruns_only_the_rules_whose_commands_run_the_edit(
        finished, module, edit, planned, not_planned):
    project, code, outputs = finished
    root = code / "src/helixflow"
    before = digests(root)
    path = root / f"{module}.py"
    original = path.read_text()
    path.write_text(edit(original))
    try:
        after = digests(root)
        jobs, changed = reruns(project, code)
    finally:
        path.write_text(original)
    edited = {c for c in USED if after[c] != before[c]}
    expected = {rule for rule, (commands, _) in RULES.items()
                if rule in set(outputs.values()) and set(commands) & edited}
    assert changed == expected and planned <= set(jobs), (jobs, expected)
    assert not not_planned & set(jobs), jobs


def test_code_graph_reads_source_only():
    """Snakemake's start-up computes every digest: no torch (nor numpy) imported."""
    code = ("import sys; from helixflow.code_graph import command_digests; command_digests(); "
            "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
