"""Choosing each layer's deployed form by measured time instead of by MACs.

Fewer MACs is not always less time: on a CPU a thin 1x1 conv over a large feature map
is bound by memory traffic, and the pair writes one more activation than the dense op.
Timing both forms on the layer's real input shape, on the machine that will run the
model, settles it.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


@torch.no_grad()
def median_seconds(candidates: list[nn.Module], inputs: torch.Tensor, rounds: int = 9, warmup: int = 2) -> list[float]:
    """Median seconds per forward of each module, timed interleaved (A B A B ...) so noise hits all alike."""
    times: list[list[float]] = [[] for _ in candidates]
    for index in range(warmup + rounds):
        for module, bucket in zip(candidates, times):
            start = time.perf_counter()
            module(inputs)
            if index >= warmup:
                bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def faster_form(dense: nn.Module, factored: nn.Module, input_shape: torch.Size, rounds: int = 9) -> nn.Module:
    """Whichever of two equivalent modules runs faster on a random input of ``input_shape``."""
    inputs = torch.randn(input_shape, dtype=next(dense.parameters()).dtype)
    dense_s, factored_s = median_seconds([dense.eval(), factored.eval()], inputs, rounds)
    return factored if factored_s < dense_s else dense
