"""Choosing each layer's deployed form by measured time instead of by MACs.

Fewer MACs is not always less time: on a CPU a thin 1x1 conv over a large feature map
is bound by memory traffic, and the pair writes one more activation than the dense op.
Timing both forms on the layer's real input shape, on the machine that will run the
model, settles it.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Callable

import torch
from torch import nn


def interleaved_medians(calls: list[Callable[[], object]], rounds: int, warmup: int = 2) -> list[float]:
    """Median seconds of each zero-argument call, timed interleaved (A B A B ...) so machine
    noise hits all alike; the first ``warmup`` rounds are not counted."""
    times: list[list[float]] = [[] for _ in calls]
    for index in range(warmup + rounds):
        for call, bucket in zip(calls, times):
            start = time.perf_counter()
            call()
            if index >= warmup:
                bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


@torch.no_grad()
def median_seconds(
    candidates: list[nn.Module], inputs: torch.Tensor | tuple | dict, rounds: int = 9, warmup: int = 2
) -> list[float]:
    """Median seconds per forward of each module on ``inputs`` (a tensor, a tuple of positional
    inputs or a dict of keyword inputs), timed interleaved."""
    return interleaved_medians([partial(_call, module, inputs) for module in candidates], rounds, warmup)


def _call(module: nn.Module, inputs: torch.Tensor | tuple | dict) -> object:
    if isinstance(inputs, dict):
        return module(**inputs)
    return module(*inputs) if isinstance(inputs, tuple) else module(inputs)


def faster_form(dense: nn.Module, factored: nn.Module, inputs: tuple, rounds: int = 9) -> nn.Module:
    """Whichever of two equivalent modules runs faster on ``inputs`` (positional)."""
    dense_s, factored_s = median_seconds([dense.eval(), factored.eval()], inputs, rounds)
    return factored if factored_s < dense_s else dense
