"""Checkpoints that resume a run exactly: every random stream saved, written atomically, read
with torch's safe loader. Shared by the training loop (:mod:`helixflow.fit`) and pretraining."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .files import atomic_path


def rng_state(generators: Sequence[torch.Generator] = (),
              numpy_generators: Sequence[np.random.Generator] = ()) -> dict:
    """Python's, numpy's and torch's global streams (CPU and every GPU), plus the run's own
    torch ``generators`` and ``numpy_generators``."""
    np_state = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      *np_state[2:]],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generators": [g.get_state() for g in generators],
            "numpy_generators": [g.bit_generator.state for g in numpy_generators]}


def set_rng_state(state: dict, generators: Sequence[torch.Generator] = (),
                  numpy_generators: Sequence[np.random.Generator] = ()) -> None:
    """Restore what :func:`rng_state` saved, into the same generators in the same order."""
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for generator, saved in zip(generators, state["generators"], strict=True):
        generator.set_state(saved)
    for generator, saved in zip(numpy_generators, state["numpy_generators"], strict=True):
        generator.bit_generator.state = saved


def write_checkpoint(path: str | Path, state: dict) -> None:
    """``torch.save`` to a temporary name, then rename: a killed job leaves the last one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: str | Path) -> dict | None:
    """The checkpoint's contents (tensors and plain Python values only), or None when there
    is none or it cannot be read (a truncated file)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, RuntimeError, EOFError, OSError):
        return None
