"""Build, save and load the sequence encoders (transformer with RoPE, dilated CNN).

Every encoder maps token ids ``tokens: LongTensor, shape=(B, L)`` (ids of
:class:`helixflow.tokenize.Tokenizer`) and an optional ``padding_mask: BoolTensor, shape=(B, L)``
(True at padding; default: wherever the token is [PAD]) to per-token features
``shape=(B, L, d_model)``; ``encoder.pooled(tokens)`` is the global descriptor ``shape=(B,
d_model)``. Attributes: ``d_model``, ``vocab_size``, ``config`` (a JSON-able dict that rebuilds
the architecture through :func:`build_encoder`).

On disk (like :mod:`helixflow.models.cnn`): ``model.safetensors`` + ``config.json`` in one
directory, written atomically by :func:`save_encoder` and read by :func:`load_encoder`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import InputError
from ..tokenize import Tokenizer
from .adapters import insert_adapters
from .dilated import DILATED_DEFAULTS, DilatedCNNEncoder
from .transformer import TRANSFORMER_DEFAULTS, TransformerEncoder
from .weights import n_parameters, save_weights  # noqa: F401  (n_parameters: API)

ARCHITECTURES = {"transformer": (TransformerEncoder, TRANSFORMER_DEFAULTS),
                 "dilated_cnn": (DilatedCNNEncoder, DILATED_DEFAULTS)}


def encoder_config(config: dict) -> dict:
    """The full config: the architecture's defaults overridden by ``config``; checks keys."""
    name = config.get("architecture", "transformer")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown encoder architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    defaults = ARCHITECTURES[name][1]
    known = set(defaults) | {"vocab_size", "adapter_bottleneck"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown {name} setting(s) {unknown}; known: {sorted(known)}")
    cfg = {**defaults, **config, "architecture": name}
    Tokenizer(cfg["k"], cfg["stride"])                         # validates k and stride
    expected = 5 + 4 ** cfg["k"]
    if cfg.get("vocab_size", expected) != expected:
        raise ValueError(f"vocab_size {cfg['vocab_size']} does not match k={cfg['k']} "
                         f"({expected})")
    if cfg["rc_equivariant"] and name == "dilated_cnn" and cfg["d_model"] % 2:
        raise ValueError(f"an RC-equivariant dilated CNN needs an even d_model, got "
                         f"{cfg['d_model']}")
    return cfg


def build_encoder(config: dict) -> nn.Module:
    """A freshly initialised encoder from ``config`` (missing keys take the defaults:
    ``TRANSFORMER_DEFAULTS`` or ``DILATED_DEFAULTS``, picked by ``config['architecture']``)."""
    cfg = encoder_config(config)
    bottleneck = cfg.pop("adapter_bottleneck", None)
    encoder = ARCHITECTURES[cfg["architecture"]][0](cfg)
    if bottleneck:
        insert_adapters(encoder, bottleneck)
    return encoder


def encoder_tokenizer(encoder_or_config: nn.Module | dict) -> Tokenizer:
    """The tokenizer whose ids an encoder reads."""
    cfg = getattr(encoder_or_config, "config", encoder_or_config)
    return Tokenizer(cfg["k"], cfg["stride"])


def save_encoder(encoder: nn.Module, out_dir: str | Path) -> None:
    """Write ``model.safetensors`` and ``config.json`` (atomically) into ``out_dir``."""
    save_weights(encoder, encoder.config, out_dir)


def load_encoder(model_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild an encoder from ``config.json`` + ``model.safetensors`` (eval mode).

    Extra tensors in the file (e.g. a pretraining head saved beside the encoder) are ignored;
    a missing encoder tensor is an error.
    """
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / "config.json", model_dir / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.exists():
            raise InputError("missing encoder file", path=path,
                             fix="point to a directory written by save_encoder (pretraining "
                             "writes model.safetensors and config.json)")
    try:
        encoder = build_encoder(json.loads(config_path.read_text()))
    except (ValueError, KeyError) as err:
        raise InputError(f"cannot build the encoder: {err}", path=config_path,
                         fix="write the config with helixflow.models.encoders.save_encoder"
                         ) from err
    state = load_file(str(weights_path))
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise InputError(f"weights lack {len(missing)} encoder tensor(s), e.g. {missing[:3]}",
                         path=weights_path, fix="the weights and config.json come from "
                         "different models; re-save both with save_encoder")
    encoder.load_state_dict({k: state[k] for k in own})
    return encoder.to(device).eval()
