"""Device choice: a GPU that was asked for or granted is used, or the job stops and says why."""

from __future__ import annotations

import pytest
import torch

from helixflow.device import gpu_grant, resolve_device
from helixflow.errors import InputError


@pytest.mark.parametrize("environ, grant", [
    ({}, None),
    ({"CUDA_VISIBLE_DEVICES": ""}, None),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, None),
    ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, None),
    ({"SLURM_GPUS_ON_NODE": "0"}, None),
    ({"CUDA_VISIBLE_DEVICES": "0"}, "CUDA_VISIBLE_DEVICES=0"),
    ({"SLURM_JOB_GPUS": "2,3"}, "SLURM_JOB_GPUS=2,3"),
    ({"SLURM_GPUS_ON_NODE": "1"}, "SLURM_GPUS_ON_NODE=1"),
])
def test_gpu_grant_is_read_from_slurm_and_cuda_variables(environ, grant):
    assert gpu_grant(environ) == grant


def test_cpu_is_always_the_cpu():
    assert resolve_device("cpu", environ={"CUDA_VISIBLE_DEVICES": "0"}).type == "cpu"


def test_unknown_device_names_the_choices():
    with pytest.raises(InputError, match="auto, cpu, cuda"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where torch sees no GPU")
def test_auto_without_a_grant_trains_on_the_cpu():
    assert resolve_device("auto", environ={}).type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where torch sees no GPU")
@pytest.mark.parametrize("name, environ", [("auto", {"CUDA_VISIBLE_DEVICES": "0"}),
                                           ("auto", {"SLURM_JOB_GPUS": "0"}),
                                           ("cuda", {})])
def test_a_gpu_torch_cannot_see_stops_with_cause_and_fix(name, environ):
    with pytest.raises(InputError) as error:
        resolve_device(name, environ=environ)
    message = str(error.value)
    assert ("granted a GPU" in message) == (name == "auto")
    assert "CPU-only build" in message or "finds no usable GPU" in message
    assert "install the CUDA build" in message and "device: cpu" in message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_auto_with_a_gpu_uses_it():
    assert resolve_device("auto").type == "cuda"
