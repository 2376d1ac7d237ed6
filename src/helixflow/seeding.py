"""Repeatable CPU training, shared by every trainer (CNN, denoising and contrastive models)."""

from __future__ import annotations

import numpy as np
import torch


def seed_everything(seed: int, threads: int) -> torch.Generator:
    """Seed torch and numpy, use deterministic kernels and ``threads`` intra-op threads.

    Returns a torch generator seeded with ``seed`` for shuffling and augmentation.
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str, index: int | None = None) -> torch.device:
    """``"auto"`` (CUDA when torch sees a GPU, else CPU), ``"cpu"`` or ``"cuda"`` (GPU
    ``index``) as a torch device; asking for CUDA without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for but torch sees no GPU")
        return torch.device("cuda", index)
    return torch.device(name)
