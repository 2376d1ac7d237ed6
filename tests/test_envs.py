"""Each rule's conda environment lists, pinned, every third-party package its code imports.

Static: the rule's ``helixflow STAGE`` command → the CLI function → the helixflow modules it
imports (transitively) → their third-party imports → the distributions that provide them,
which the rule's ``envs/*.yaml`` must pin. Conda channels are unreachable here, so the
environments are never built; this check keeps them true anyway.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from tiny_project import REPO

RULE = re.compile(r"^[ \t]*rule (\w+):\n(.*?)(?=^[ \t]*rule |^\S|\Z)", re.S | re.M)


def rules_with_envs(repo: Path) -> dict[str, tuple[Path, str | None]]:
    """{rule: (env file, helixflow stage or None)} from workflow/rules/*.smk."""
    rules = {}
    for smk in sorted((repo / "workflow/rules").glob("*.smk")):
        for name, body in RULE.findall(smk.read_text()):
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
            stage = re.search(r'"helixflow ([a-z-]+)', body)
            env = (smk.parent / conda.group(1)).resolve() if conda else None
            rules[name] = (env, stage.group(1) if stage else None)
    return rules


def _imports(tree: ast.AST, package: str) -> tuple[set[str], set[str]]:
    """(helixflow modules, top-level third-party names) imported anywhere in ``tree``."""
    internal, external = set(), set()
    optional = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Try)
                and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError"
                        for h in node.handlers)
                for stmt in node.body for inner in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in optional:      # try: import x / except ImportError: an optional extra
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = package.split(".")    # ``package`` is the importing module's name
            base = parts[: len(parts) - node.level]
            module = ".".join([*base, node.module] if node.module else base)
            internal |= {f"{module}.{a.name}" for a in node.names} | {module}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("helixflow"):
                internal.add(node.module)
            else:
                external.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("helixflow"):
                    internal.add(alias.name)
                else:
                    external.add(alias.name.split(".")[0])
    return internal, external


def stage_imports(src: Path, stage: str) -> set[str]:
    """Third-party top-level imports reachable from the CLI sub-command ``stage``."""
    cli = ast.parse((src / "helixflow/cli.py").read_text())
    funcs = {f.name: f for f in cli.body if isinstance(f, ast.FunctionDef)}
    command = "cmd_" + stage.replace("-", "_")   # the CLI's naming convention
    assert command in funcs, f"helixflow {stage}: no function {command} in cli.py"
    todo, external = _imports(funcs[command], "helixflow.cli")
    module_level = [n for n in cli.body if isinstance(n, ast.Import | ast.ImportFrom)]
    external |= _imports(ast.Module(body=module_level, type_ignores=[]), "helixflow.cli")[1]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        path = src / (module.replace(".", "/") + ".py")
        if module in seen or not path.is_file():
            continue
        seen.add(module)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        internal, more = _imports(ast.parse(path.read_text()), module if
                                  path.name == "__init__.py" else f"{package}.x")
        todo |= internal - seen
        external |= more
    return {name for name in external if name not in sys.stdlib_module_names}


def pinned_packages(env_file: Path) -> dict[str, str]:
    """{normalised name: pin} for conda and pip entries of an environment file."""
    spec = yaml.safe_load(env_file.read_text())
    entries = []
    for dep in spec["dependencies"]:
        entries += dep["pip"] if isinstance(dep, dict) else [dep]
    pins = {}
    for entry in entries:
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(==|=)\s*([^\s#]+)", entry)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(3)
    return pins


def missing_from_envs(repo: Path, src: Path) -> list[str]:
    """Every (rule, package) whose import the rule's environment does not pin."""
    provides = packages_distributions()
    problems = []
    for rule, (env, stage) in rules_with_envs(repo).items():
        if stage is None:
            continue
        if env is None or not env.is_file():
            problems.append(f"{rule}: conda env {env} does not exist")
            continue
        pins = pinned_packages(env)
        for name in sorted(stage_imports(src, stage)):
            dists = [d.lower().replace("_", "-") for d in provides.get(name, [name])]
            if not any(d in pins for d in dists):
                problems.append(f"{rule}: imports {name} ({'/'.join(dists)}) but "
                                f"{env.name} does not pin it")
    return problems


def test_every_rule_names_an_existing_env():
    rules = rules_with_envs(REPO)
    assert len(rules) >= 15
    for rule, (env, _) in rules.items():
        if rule in ("all", "figures"):
            continue
        assert env is not None and env.is_file(), f"rule {rule} has no conda env file"


def test_envs_pin_every_package_their_rules_import():
    assert missing_from_envs(REPO, REPO / "src") == []


def test_check_fails_when_an_import_is_added_without_its_env_entry(tmp_path):
    for part in ("workflow", "envs", "src"):
        shutil.copytree(REPO / part, tmp_path / part)
    with open(tmp_path / "src/helixflow/kmers.py", "a") as handle:
        handle.write("\nimport scipy.sparse  # noqa: E402,F401\n")
    problems = missing_from_envs(tmp_path, tmp_path / "src")
    assert any(p.startswith("kmer_baseline: imports scipy") for p in problems), problems


@pytest.mark.parametrize("env", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_env_files_are_pinned(env):
    spec = yaml.safe_load((REPO / "envs" / env).read_text())
    assert spec["name"].startswith("helixflow-")
    for dep in spec["dependencies"]:
        for entry in dep["pip"] if isinstance(dep, dict) else [dep]:
            assert entry.startswith("-e ") or re.search(r"==?\d", entry), \
                f"{env}: '{entry}' is not pinned"
