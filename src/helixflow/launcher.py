"""How every rule starts the library: ``helixflow STAGE ...`` from a checkout's ``src/``.

The rules' conda environments (``envs/*.yaml``) hold third-party packages only — a pip path
such as ``-e ..`` would point inside ``.snakemake/conda/`` once Snakemake copies the file —
so each job puts the checkout's ``src/`` on ``PYTHONPATH`` and runs ``python -m helixflow``.
In the project's virtual environment this runs the same code as the installed script.
"""

from __future__ import annotations

import shlex
from pathlib import Path

CONFIG_SOURCE_VARIABLE = "HELIXFLOW_CONFIG"   # the config file(s) a run used, for messages


def shell_prefix(src: str | Path, python: str = "python", config_source: str = "") -> str:
    """Bash prefix for every rule's shell command (Snakemake's ``shell.prefix``).

    Strict mode, ``src`` first on ``PYTHONPATH``, the config file(s) in ``$HELIXFLOW_CONFIG``
    (errors name them; an environment variable, not a param, so that naming the same config
    another way re-runs nothing), and a ``helixflow`` shell function that runs the package
    with ``python``: the rule's conda env's own ``python`` under ``--sdm conda``, else the
    interpreter that runs Snakemake (the project's ``.venv``, activated or not). Braces are
    doubled because Snakemake formats the prefix like a rule's command.
    """
    def escape(text: str) -> str:
        return shlex.quote(text).replace("{", "{{").replace("}", "}}")

    return (f"set -euo pipefail; export PYTHONPATH={escape(str(src))}"
            f"${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
            f"export {CONFIG_SOURCE_VARIABLE}={escape(config_source or 'the config')}; "
            f'helixflow() {{{{ {escape(python)} -m helixflow "$@"; }}}}; ')


def failed_job_refusals(snakemake_logs: str | Path | list) -> list[str]:
    """The ``helixflow:`` lines of every failed job's log, named by rule, for Snakemake's
    ``onerror`` to print after its own error blocks (so a refusal is the last message a user
    reads, not only a line inside a log file).

    ``snakemake_logs``: the main log(s) Snakemake passes to ``onerror`` as ``log``; each
    ``Error in rule NAME:`` block there names its job's ``log:`` file(s).
    """
    paths = [snakemake_logs] if isinstance(snakemake_logs, (str, Path)) else snakemake_logs
    lines: list[str] = []
    for main_log in paths:
        try:
            text = Path(main_log).read_text(errors="replace")
        except OSError:
            continue
        rule = None
        for line in text.splitlines():
            if line.startswith("Error in rule "):
                rule = line[len("Error in rule "):].rstrip(":")
            elif rule and line.strip().startswith("log: "):
                logs = line.strip()[len("log: "):].split(" (check log file")[0]
                for job_log in logs.split(", "):
                    lines += [f"helixflow: rule {rule} ({job_log}): "
                              f"{refusal[len('helixflow: '):]}"
                              for refusal in _refusals(Path(job_log))]
                rule = None
    return list(dict.fromkeys(lines))


def _refusals(job_log: Path) -> list[str]:
    try:
        text = job_log.read_text(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.startswith("helixflow: ")]
