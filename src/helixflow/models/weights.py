"""Weights on disk: ``model.safetensors`` (never a pickle) beside the ``config.json`` that
rebuilds the architecture, both written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
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
