"""Where and how reproducibly a run executes: the device and the seeds."""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def denormals_flushed(on: bool) -> Iterator[None]:
    """Within the block, subnormal floats count as zero (x86 FTZ/DAZ); as before after it.

    Training drives some weights geometrically towards zero (a dead input channel's entries of
    Vh after truncation, BENCHMARKS.md section 3.4), and steps that touch subnormal values run
    slower (benchmarks/subnormal_weights.py); values below 1.2e-38 lose nothing. The flag is
    per thread and worker threads copy it when they start: a run sets it before its first
    parallel operation, and restoring it reaches this thread only."""
    before = _flushing()
    torch.set_flush_denormal(on)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def _flushing() -> bool:
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0  # a subnormal survives unless flushed


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return torch.device(name)
