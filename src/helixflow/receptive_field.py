"""Receptive field of every layer of a 1-D convolutional stack, read off the architecture.

The standard recursion (Araujo et al. 2019, "Computing receptive fields of CNNs"): with
``r_0 = 1`` and ``j_0 = 1`` (one input base),

    r_l = r_{l-1} + (k_l - 1) * d_l * j_{l-1}        receptive field, in bases
    j_l = j_{l-1} * s_l                               jump: bases between adjacent outputs

for kernel ``k_l``, dilation ``d_l`` and stride ``s_l``. Padding moves the field but never
widens it. A global pooling or a dense layer over the flattened map combines every position
left, so it is a pooling with kernel = the input length (the whole window when that is known).

The receptive field of a neuron above the first convolution bounds the motif grammar it can
learn (seed 002): two first-layer motifs of width ``k_1`` fit in a field of ``r_l`` bases when
their starts are at most ``r_l - k_1`` apart (column ``max_spacing_bp``). Whether a layer can
weigh *where* its inputs are (``position_specific``) is a separate question: a max or mean
pool sees the whole span but gives every position the same weight, so a DeepBind-style
conv → global max pool → dense network sees the whole window yet cannot learn a spacing.
"""

from __future__ import annotations

import math

import pandas as pd
from torch import nn

COLUMNS = ["layer", "kind", "kernel", "stride", "dilation", "padding", "length_out", "jump",
           "receptive_field_bp", "max_spacing_bp", "position_specific"]
KINDS = ("conv", "pool", "global")


def receptive_fields(layers: list[dict], window: int | None = None) -> pd.DataFrame:
    """One row per layer: receptive field and jump by the standard recursion.

    layers: dicts with ``kind`` ("conv", "pool" or "global"), ``kernel``, ``stride``,
    ``dilation`` (default 1), ``padding`` (default 0), optional ``name``. A "global" layer
    (global pooling, or a dense layer over the flattened map) takes the whole input: its
    kernel is the input length, so it needs ``window`` (the input length in bases).
    A global layer's field is capped at ``window`` (padding can push the recursion past
    it). Returns a DataFrame with ``COLUMNS``; ``length_out`` is the output length (NaN when
    ``window`` is None), ``max_spacing_bp`` = receptive field − first conv kernel (0 before
    it), ``position_specific`` whether the layer weighs its input positions individually
    (a conv with kernel > 1 on a map, or a dense "global" layer over more than one position).
    """
    rows = []
    field, jump = 1, 1
    length: float = float(window) if window is not None else math.nan
    first_kernel: int | None = None
    for i, layer in enumerate(layers):
        kind = layer["kind"]
        if kind not in KINDS:
            raise ValueError(f"layer {i}: kind must be one of {KINDS}, got {kind!r}")
        dense = bool(layer.get("dense", False))
        if kind == "global":
            if math.isnan(length):
                raise ValueError(f"layer {i}: a global layer needs the input window length")
            kernel, stride, dilation, padding = int(length), 1, 1, 0
        else:
            kernel, stride = int(layer["kernel"]), int(layer.get("stride") or 1)
            dilation, padding = int(layer.get("dilation", 1)), int(layer.get("padding", 0))
        if min(kernel, stride, dilation) < 1 or padding < 0:
            raise ValueError(f"layer {i}: kernel, stride, dilation must be >= 1 and padding "
                             f">= 0, got {kernel}, {stride}, {dilation}, {padding}")
        positions_in = length
        field += (kernel - 1) * dilation * jump
        if kind == "global" and window is not None:
            field = min(field, int(window))  # padding can push the recursion past the window
        jump *= stride
        length = math.floor((length + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1 \
            if not math.isnan(length) else math.nan
        if kind == "conv" and first_kernel is None:
            first_kernel = field
        position_specific = (first_kernel is not None and
                             ((kind == "conv" and kernel > 1 and field > first_kernel) or
                              (kind == "global" and dense and positions_in > 1)))
        rows.append({"layer": layer.get("name", f"{i}"), "kind": kind, "kernel": kernel,
                     "stride": stride, "dilation": dilation, "padding": padding,
                     "length_out": length, "jump": jump, "receptive_field_bp": field,
                     "max_spacing_bp": field - first_kernel if first_kernel else 0,
                     "position_specific": bool(position_specific)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _pair(value) -> int:
    """An int from a torch layer attribute that may be an int or a 1-tuple."""
    return int(value[0] if isinstance(value, tuple | list) else value)


def layers_of(model: nn.Module) -> list[dict]:
    """The layers of a 1-D conv stack in registration order, as ``receptive_fields`` input.

    Conv1d → "conv"; MaxPool1d / AvgPool1d → "pool"; AdaptiveMax/AvgPool1d with output size 1
    → "global"; the first Linear after a conv → "global" with ``dense=True`` (it reads the
    flattened map; later Linear layers add nothing). Pointwise layers (activations, norms,
    dropout) are skipped. Assumes modules are registered in the order they run, as in
    ``nn.Sequential`` stacks and :class:`helixflow.models.cnn.BindingCNN`; a residual branch
    is read as part of the main path. Raises ValueError for a module kind it cannot place
    (a Conv2d, an adaptive pool to more than one position, a recurrent layer).
    """
    layers: list[dict] = []
    after_global = False
    for name, module in model.named_modules():
        if after_global:
            if isinstance(module, nn.Conv1d | nn.MaxPool1d | nn.AvgPool1d):
                raise ValueError(f"{name}: a {type(module).__name__} after the global layer "
                                 "is not a 1-D stack layers_of can read")
            continue
        if isinstance(module, nn.Conv1d):
            if isinstance(module.padding, str):
                pad = (_pair(module.dilation) * (_pair(module.kernel_size) - 1)) // 2 \
                    if module.padding == "same" else 0
            else:
                pad = _pair(module.padding)
            layers.append({"name": name, "kind": "conv", "kernel": _pair(module.kernel_size),
                           "stride": _pair(module.stride), "dilation": _pair(module.dilation),
                           "padding": pad})
        elif isinstance(module, nn.MaxPool1d | nn.AvgPool1d):
            dilation = _pair(getattr(module, "dilation", 1))
            layers.append({"name": name, "kind": "pool", "kernel": _pair(module.kernel_size),
                           "stride": _pair(module.stride or module.kernel_size),
                           "dilation": dilation, "padding": _pair(module.padding)})
        elif isinstance(module, nn.AdaptiveMaxPool1d | nn.AdaptiveAvgPool1d):
            if _pair(module.output_size) != 1:
                raise ValueError(f"{name}: adaptive pooling to {module.output_size} positions "
                                 "has no fixed kernel; only global (output_size=1) is supported")
            layers.append({"name": name, "kind": "global"})
            after_global = True
        elif isinstance(module, nn.Linear) and layers:
            layers.append({"name": name, "kind": "global", "dense": True})
            after_global = True
        elif isinstance(module, nn.Conv2d | nn.Conv3d | nn.RNNBase | nn.MultiheadAttention):
            raise ValueError(f"{name}: {type(module).__name__} is not a 1-D conv stack layer")
    if not any(layer["kind"] == "conv" for layer in layers):
        raise ValueError("model has no Conv1d layer")
    return layers


def model_receptive_fields(model: nn.Module, window: int | None = None) -> pd.DataFrame:
    """``receptive_fields(layers_of(model), window)``; the window defaults to
    ``model.config.window`` when the model has one (as BindingCNN does)."""
    if window is None:
        window = getattr(getattr(model, "config", None), "window", None)
    return receptive_fields(layers_of(model), window)
