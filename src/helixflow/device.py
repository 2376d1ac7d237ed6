"""Which device a job trains on: the GPU it was granted, or the CPU, never silently the wrong one.

``device`` in the config is "auto" (the GPU when torch sees one, else the CPU), "cpu" or
"cuda". A job that was granted a GPU (SLURM or the user set ``CUDA_VISIBLE_DEVICES``) but in
which torch sees none stops with the cause and the fix instead of training on the CPU for
hours while the GPU idles.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda")
GRANT_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS",
                   "SLURM_GPUS_ON_NODE")
NO_GPU = ("", "-1", "none", "nodevfiles")


def gpu_grant(environ: Mapping[str, str] | None = None) -> str | None:
    """The variable and value that say this job was granted a GPU, e.g.
    "CUDA_VISIBLE_DEVICES=0"; None when nothing grants one (an empty value, "-1", "none" or
    "NoDevFiles" grants none)."""
    environ = os.environ if environ is None else environ
    for name in GRANT_VARIABLES:
        value = environ.get(name, "").strip()
        if value.lower() in NO_GPU or (name == "SLURM_GPUS_ON_NODE" and value == "0"):
            continue
        return f"{name}={value}"
    return None


def why_no_gpu() -> str:
    """Why torch sees no GPU, in words."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is the CPU-only build"
    return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU "
            "(no driver, or the driver is older than this CUDA)")


def resolve_device(name: str = "auto", index: int | None = None,
                   environ: Mapping[str, str] | None = None) -> torch.device:
    """The torch device for ``name`` ("auto", "cpu" or "cuda"; GPU ``index``).

    Raises :class:`InputError` with the cause and the fix when a GPU is asked for
    ("cuda") or was granted to the job ("auto" under a grant) but torch sees none.
    """
    if name not in DEVICES:
        raise InputError(f"unknown device {name!r}", fix="use one of " + ", ".join(DEVICES))
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", index)
    grant = gpu_grant(environ)
    if name == "cuda" or grant:
        asked = "device 'cuda' was asked for" if name == "cuda" else \
            f"this job was granted a GPU ({grant})"
        raise InputError(
            f"{asked} but {why_no_gpu()}",
            fix="install the CUDA build of torch on the GPU nodes (bash scripts/setup.sh does "
            "where nvidia-smi works), or set 'device: cpu' in the config to train on the CPU")
    return torch.device("cpu")
