"""Weights on disk: ``model.safetensors`` (never a pickle) beside the ``config.json`` that
rebuilds the architecture, both written atomically."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from ..files import atomic_path


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_weights(model: nn.Module, config: dict, out_dir: str | Path) -> None:
    """Write ``model.safetensors`` (tagged with ``config['architecture']``) and ``config.json``."""
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"architecture": str(config["architecture"])})
    with atomic_path(out_dir / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")


def load_weights(model_dir: str | Path, build: Callable[[dict], nn.Module]) -> nn.Module:
    """The model ``build`` makes from ``config.json`` (its fields, without ``architecture``),
    with the weights of ``model.safetensors``, in eval mode."""
    model_dir = Path(model_dir)
    fields = json.loads((model_dir / "config.json").read_text())
    fields.pop("architecture", None)
    model = build(fields)
    model.load_state_dict(load_file(str(model_dir / "model.safetensors")))
    return model.eval()
