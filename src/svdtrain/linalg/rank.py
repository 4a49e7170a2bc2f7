"""Rank selection: how many singular values a layer keeps under each rule.

Scoring (which values matter most: largest |s|) is kept apart from the policy (how
many to keep), as Torch-Pruning keeps importance apart from its pruner.
"""

from __future__ import annotations

import math

import torch

# Float round-off must not push an exactly-met energy target to one more rank.
_ENERGY_RTOL = 1e-9


def _finite(s: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(s).all():
        raise ValueError("singular values contain NaN or inf; training diverged (lower the lr or the weights)")
    return s.detach()


def check_positive_int(what: str, value: object) -> int:
    """``value`` if it is an integer >= 1 (bools are not), else a ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def check_energy(energy: float) -> float:
    if isinstance(energy, bool) or not isinstance(energy, (int, float)) or not (0.0 <= energy < 1.0):
        raise ValueError(f"energy must be a number in [0, 1), got {energy!r}")
    return float(energy)


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
    return float(threshold)


def importance_order(s: torch.Tensor) -> torch.Tensor:
    """Indices of ``s`` by decreasing magnitude (a stable order, so ties keep position)."""
    return torch.argsort(s.detach().abs(), descending=True, stable=True)


def energy_rank(s: torch.Tensor, energy: float) -> int:
    """Smallest k whose k largest |s| hold >= (1 - energy) of the sum of s^2; at least 1.

    energy=0 keeps every singular value, zeros included.
    """
    check_energy(energy)
    if energy == 0.0:
        return s.numel()
    squares = _finite(s).double().pow(2).sort(descending=True).values
    total = squares.sum()
    if total == 0:
        return 1
    target = (1.0 - energy) * total * (1.0 - _ENERGY_RTOL)
    cumulative = squares.cumsum(0)
    return max(1, int((cumulative < target).sum().item()) + 1)


def threshold_rank(s: torch.Tensor, threshold: float) -> int:
    """Number of |s| >= threshold; at least 1."""
    check_threshold(threshold)
    return max(1, int((_finite(s).abs() >= threshold).sum().item()))
