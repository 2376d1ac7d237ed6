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
