"""Each rule's conda environment lists, pinned, every third-party package its code imports.

Static: the rule's ``helixflow STAGE`` command → the CLI function → the helixflow modules it
imports (transitively; helixflow.code_graph walks the graph) → their third-party imports →
the distributions that provide them, which the rule's ``envs/*.yaml`` must pin. Conda
channels are unreachable here, so the environments are never built; this check keeps them
true anyway.
"""

from __future__ import annotations

import contextlib
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


# Pins that no import shows: command-line tools the code runs, and optional dependencies a
# library loads on demand.
TOOLS = {"python": None, "pip": None,
         "bedtools": "pybedtools", "macs3": None,               # binaries (macs3: callpeak)
         "leidenalg": "scanpy", "igraph": "scanpy"}             # scanpy's sc.tl.leiden


def unused_pins(repo: Path, src: Path) -> dict[str, list[str]]:
    """{env file: pins that neither its rules' imports, their dependencies nor TOOLS need}."""
    from importlib.metadata import PackageNotFoundError, requires
    provides = packages_distributions()
    needed: dict[Path, set[str]] = {}
    for env, stage in rules_with_envs(repo).values():
        if env is not None and stage is not None:
            needed.setdefault(env, set()).update(
                d.lower().replace("_", "-") for name in stage_imports(src, stage)
                for d in provides.get(name, [name]))
    unused = {}
    for env, dists in needed.items():
        allowed = set(dists)
        for dist in dists:
            with contextlib.suppress(PackageNotFoundError):
                allowed |= {re.split(r"[ ;<>=!~\[]", r)[0].lower().replace("_", "-")
                            for r in requires(dist) or [] if "extra ==" not in r}
        allowed |= {tool for tool, needs in TOOLS.items() if needs is None or needs in dists}
        extra = sorted(set(pinned_packages(env)) - allowed)
        if extra:
            unused[env.name] = extra
    return unused


def test_envs_pin_only_what_their_rules_need():
    """No torch (or anything else) in an env unless one of its rules imports it."""
    assert unused_pins(REPO, REPO / "src") == {}


@pytest.mark.parametrize("env", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_env_file_survives_snakemakes_copy(env, tmp_path):
    """Snakemake builds each env from a copy at .snakemake/conda/<hash>.yaml: nothing in the
    file may name a path (`-e ..` would then point inside .snakemake/)."""
    deployed = tmp_path / ".snakemake" / "conda" / "0123abcd.yaml"
    deployed.parent.mkdir(parents=True)
    shutil.copy(REPO / "envs" / env, deployed)
    spec = yaml.safe_load(deployed.read_text())
    entries = [e for dep in spec["dependencies"]
               for e in (dep["pip"] if isinstance(dep, dict) else [dep])]
    for entry in entries:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+(==|=)[0-9][A-Za-z0-9_.\-]*", entry), \
            f"{env}: '{entry}' is not a pinned package name"


def test_helixflow_runs_from_src_without_being_installed(tmp_path):
    """The rules' shell prefix: `helixflow` resolves from src/ with no installed package."""
    import subprocess

    from helixflow.launcher import shell_prefix
    shim = tmp_path / "bin" / "python"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")   # -S: no site-packages
    shim.chmod(0o755)
    prefix = shell_prefix(REPO / "src").replace("{{", "{").replace("}}", "}")
    result = subprocess.run(["bash", "-c", prefix + "helixflow --help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{shim.parent}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "genome-tiles" in result.stdout and "train" in result.stdout


def test_rules_use_the_interpreter_running_snakemake_when_no_env_is_active(tmp_path):
    """Outside conda envs the prefix names the Python that runs Snakemake, so a `.venv` need
    not be on PATH (bench_scale and cron jobs call `.venv/bin/python -m snakemake`)."""
    import subprocess

    from helixflow.launcher import shell_prefix
    prefix = shell_prefix(REPO / "src", python=sys.executable)
    prefix = prefix.replace("{{", "{").replace("}}", "}")
    result = subprocess.run(["/bin/bash", "-c", prefix + "helixflow --help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": str(tmp_path)})          # no python on PATH at all
    assert result.returncode == 0, result.stderr
    assert "genome-tiles" in result.stdout
