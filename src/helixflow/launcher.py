"""How every rule starts the library: ``helixflow STAGE ...`` from a checkout's ``src/``.

The rules' conda environments (``envs/*.yaml``) hold third-party packages only — a pip path
such as ``-e ..`` would point inside ``.snakemake/conda/`` once Snakemake copies the file —
so each job puts the checkout's ``src/`` on ``PYTHONPATH`` and runs ``python -m helixflow``.
In the project's virtual environment this runs the same code as the installed script.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def shell_prefix(src: str | Path, python: str = "python") -> str:
    """Bash prefix for every rule's shell command (Snakemake's ``shell.prefix``).

    Strict mode, ``src`` first on ``PYTHONPATH``, and a ``helixflow`` shell function that runs
    the package with ``python``: the rule's conda env's own ``python`` under ``--sdm conda``,
    else the interpreter that runs Snakemake (the project's ``.venv``, activated or not).
    Braces are doubled because Snakemake formats the prefix like a rule's command.
    """
    quoted = shlex.quote(str(src)).replace("{", "{{").replace("}", "}}")
    interpreter = shlex.quote(python).replace("{", "{{").replace("}", "}}")
    return (f"set -euo pipefail; export PYTHONPATH={quoted}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
            f'helixflow() {{{{ {interpreter} -m helixflow "$@"; }}}}; ')
