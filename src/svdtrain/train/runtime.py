"""Where and how reproducibly a run executes: the device and the seeds."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def flush_denormals(on: bool) -> None:
    """Subnormal floats as zero (x86 FTZ/DAZ). Training drives some weights geometrically
    towards zero (a dead input channel's entries of Vh after truncation, BENCHMARKS.md section
    11), and steps that touch subnormal values run slower (benchmarks/subnormal_weights.py).
    Values below 1.2e-38 lose nothing. The flag is per thread and worker threads copy it when
    they start, so it is set before the run's first parallel operation."""
    torch.set_flush_denormal(on)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return torch.device(name)
