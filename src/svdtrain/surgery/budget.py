"""Choosing the energy threshold that meets a MACs budget, so users need not pick ranks."""

from __future__ import annotations

import copy

import torch
from torch import nn

from svdtrain.surgery.macs import count_macs
from svdtrain.surgery.prune import prune
from svdtrain.surgery.walk import require_svd_layers


def _macs_at(model: nn.Module, energy: float, example_input: torch.Tensor | tuple) -> int:
    trial = copy.deepcopy(model)
    prune(trial, energy=energy)
    return count_macs(trial, example_input)


def energy_for_macs(
    model: nn.Module, example_input: torch.Tensor | tuple, max_macs: int, *, tolerance: float = 1e-4
) -> float:
    """The smallest energy whose pruning brings the model to at most ``max_macs``.

    MACs only fall as the energy grows, so a bisection over [0, 1) finds it; the model is
    not changed. Pass the result to :func:`prune`.

    Raises:
        ValueError: the budget is not reachable even at rank 1 everywhere, or no SVD layers.
    """
    require_svd_layers(model)
    if _macs_at(model, 0.0, example_input) <= max_macs:
        return 0.0
    low, high = 0.0, 1.0 - 1e-12
    floor = _macs_at(model, high, example_input)
    if floor > max_macs:
        raise ValueError(f"a budget of {max_macs:,} MACs is out of reach: even rank 1 per layer costs {floor:,}")
    while high - low > tolerance:
        middle = (low + high) / 2
        if _macs_at(model, middle, example_input) <= max_macs:
            high = middle
        else:
            low = middle
    return high
