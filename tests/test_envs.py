"""Each rule's conda environment lists, pinned, every third-party package its code imports.

Static: the rule's ``helixflow STAGE`` command → the CLI function → the helixflow modules it
imports (transitively; helixflow.code_graph walks the graph) → their third-party imports →
the distributions that provide them, which the rule's ``envs/*.yaml`` must pin. Conda
channels are unreachable here, so the environments are never built; this check keeps them
true anyway.
"""

from __future__ import annotations

import re
import shutil
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from tiny_project import REPO

from helixflow.code_graph import command_code

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


def stage_imports(src: Path, stage: str) -> set[str]:
    """Third-party top-level imports reachable from the CLI sub-command ``stage``: the import
    graph's walk (helixflow.code_graph) from its function in cli.py."""
    external = command_code(stage, root=src / "helixflow").external
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
