"""Receptive fields: the recursion against hand-computed values and against gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helixflow.models.cnn import BindingCNN, CNNConfig
from helixflow.receptive_field import layers_of, model_receptive_fields, receptive_fields


def test_recursion_matches_hand_computed_values():
    # conv k9 → pool 4/4 → conv k5 dilation 2 → conv k3 stride 2 → conv k3 dilation 4
    layers = [{"kind": "conv", "kernel": 9, "stride": 1, "dilation": 1},
              {"kind": "pool", "kernel": 4, "stride": 4, "dilation": 1},
              {"kind": "conv", "kernel": 5, "stride": 1, "dilation": 2},
              {"kind": "conv", "kernel": 3, "stride": 2, "dilation": 1},
              {"kind": "conv", "kernel": 3, "stride": 1, "dilation": 4}]
    table = receptive_fields(layers)
    # r: 9; 9 + 3·1 = 12; 12 + 4·2·4 = 44; 44 + 2·1·4 = 52; 52 + 2·4·8 = 116
    assert table["receptive_field_bp"].tolist() == [9, 12, 44, 52, 116]
    assert table["jump"].tolist() == [1, 4, 4, 8, 8]
    assert table["max_spacing_bp"].tolist() == [0, 3, 35, 43, 107]
    assert table["position_specific"].tolist() == [False, False, True, True, True]


def test_binding_cnn_global_pool_sees_the_window_but_no_spacing():
    table = model_receptive_fields(BindingCNN(CNNConfig(window=200, kernel=19, pool=0)))
    assert table["kind"].tolist() == ["conv", "global"]   # adaptive global max, then dense
    assert table["receptive_field_bp"].tolist() == [19, 200]
    assert not table["position_specific"].any()  # global max → dense: co-occurrence only


def test_binding_cnn_local_pool_then_dense_is_position_specific():
    table = model_receptive_fields(BindingCNN(CNNConfig(window=200, kernel=19, pool=10)))
    # conv 19; pool 10: 19 + 9 = 28, jump 10, 18 positions; dense over 18: 28 + 17·10 = 198
    assert table["receptive_field_bp"].tolist() == [19, 28, 198]
    assert table["length_out"].tolist() == [182, 18, 1]
    assert table["position_specific"].tolist() == [False, False, True]


def _empirical_field(model: nn.Module, length: int) -> int:
    """Span of input positions with a nonzero gradient for the middle output position."""
    x = torch.zeros(1, 4, length, requires_grad=True)
    out = model(x)
    out[0, :, out.shape[-1] // 2].sum().backward()
    hit = np.flatnonzero(x.grad.abs().sum(dim=(0, 1)).numpy() > 0)
    return int(hit[-1] - hit[0] + 1)


@pytest.mark.parametrize("spec", [
    [("conv", 7, 1, 1)],
    [("conv", 5, 1, 1), ("avg", 3, 3, 1), ("conv", 3, 1, 2)],
    [("conv", 9, 1, 1), ("conv", 3, 1, 2), ("conv", 3, 1, 4), ("conv", 3, 1, 8)],
    [("conv", 4, 2, 1), ("avg", 2, 2, 1), ("conv", 5, 3, 3), ("conv", 2, 1, 5)],
])
def test_recursion_matches_gradient_span(spec):
    torch.manual_seed(0)
    modules: list[nn.Module] = []
    channels = 4
    for kind, kernel, stride, dilation in spec:
        if kind == "conv":
            conv = nn.Conv1d(channels, 3, kernel, stride=stride, dilation=dilation,
                             padding=kernel // 2)
            nn.init.constant_(conv.weight, 1.0)  # positive weights: no cancellation
            modules.append(conv)
            channels = 3
        else:
            modules.append(nn.AvgPool1d(kernel, stride))
    model = nn.Sequential(*modules)
    computed = receptive_fields(layers_of(model))["receptive_field_bp"].iloc[-1]
    assert _empirical_field(model, 600) == computed


def test_layers_of_rejects_what_it_cannot_read():
    with pytest.raises(ValueError, match="no Conv1d"):
        layers_of(nn.Sequential(nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="adaptive pooling"):
        layers_of(nn.Sequential(nn.Conv1d(4, 2, 3), nn.AdaptiveMaxPool1d(5)))
    with pytest.raises(ValueError, match="needs the input window"):
        receptive_fields([{"kind": "conv", "kernel": 3}, {"kind": "global"}])


def test_adaptive_global_pool_covers_the_window():
    model = nn.Sequential(nn.Conv1d(4, 8, 11, padding="same"), nn.ReLU(), nn.MaxPool1d(2),
                          nn.Conv1d(8, 8, 5, dilation=3), nn.AdaptiveMaxPool1d(1), nn.Flatten(),
                          nn.Linear(8, 1))
    table = receptive_fields(layers_of(model), window=120)
    # 11; + 1·1 = 12 (jump 2); + 4·3·2 = 36; global over what is left
    assert table["receptive_field_bp"].tolist()[:3] == [11, 12, 36]
    assert table["kind"].tolist() == ["conv", "pool", "conv", "global"]
    assert table["length_out"].iloc[-1] == 1
    assert table["receptive_field_bp"].iloc[-1] == 120  # padded: the recursion says 130
