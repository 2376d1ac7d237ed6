"""Repeatable training, shared by every trainer (CNN, denoising and contrastive models)."""

from __future__ import annotations

import numpy as np
import torch


def seed_everything(seed: int, threads: int,
                    device: torch.device | None = None) -> torch.Generator:
    """Seed torch and numpy, use deterministic kernels and ``threads`` intra-op threads.

    Returns a torch generator seeded with ``seed`` for shuffling and augmentation (it lives on
    the CPU: the same draws on any device). On a GPU, kernels without a deterministic variant
    warn instead of failing.
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=device is not None
                                       and device.type == "cuda")
    torch.set_num_threads(threads)
    return torch.Generator().manual_seed(seed)
