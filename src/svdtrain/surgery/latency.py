"""Ranks for a measured speedup instead of a MACs budget.

A MACs budget spends its cuts where MACs are, and on a CPU that is often where time is not:
a 16-channel 3x3 conv over a 32x32 map takes about as long at 6 output channels as at 16,
and the pair adds a second op. Here each layer's dense form and its pair at a grid of ranks
are timed on the layer's real input (torch eager, this machine, this batch size), and
singular values are dropped where they buy the most time per unit of energy lost.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from svdtrain.layers import FactoredWeight, kind_for
from svdtrain.linalg import check_positive_int
from svdtrain.surgery.budget import rank_steps
from svdtrain.surgery.compact import compact, deploy_one
from svdtrain.surgery.plan import can_swap
from svdtrain.surgery.timing import median_seconds
from svdtrain.surgery.trace import trace_forward
from svdtrain.surgery.walk import by_module, copy_model, require_factored_weights


def rank_grid(rank: int, multiple: int, points: int) -> list[int]:
    """Up to ``points`` ranks below ``rank``, multiples of ``multiple``, spread evenly, descending."""
    below = rank_steps(rank, multiple)[1:]
    if len(below) <= points:
        return below
    step = (len(below) - 1) / (points - 1)
    return sorted({below[round(i * step)] for i in range(points)}, reverse=True)


def _form_at(layer: FactoredWeight, rank: int | None) -> nn.Module:
    """The layer's module deployed dense (``rank`` None) or as a pair at ``rank``, on a copy."""
    module = copy_model(layer.module)
    trial = FactoredWeight(layer.name, module, layer.param)
    if rank is not None:
        trial.keep_(rank)
    return deploy_one(module, trial, pair=rank is not None).eval()


@torch.no_grad()
def layer_times(
    layer: FactoredWeight, input_shape: torch.Size, ranks: list[int], rounds: int
) -> tuple[float, dict[int, float]]:
    """Median seconds of the dense form and of the pair at each of ``ranks``, timed interleaved."""
    inputs = torch.randn(input_shape, dtype=layer.U.dtype, device=layer.U.device)
    candidates = [_form_at(layer, None), *(_form_at(layer, r) for r in ranks)]
    dense_s, *pair_s = median_seconds(candidates, inputs, rounds)
    return dense_s, dict(zip(ranks, pair_s))


def ranks_for_speedup(
    model: nn.Module,
    example_input: torch.Tensor | tuple | dict,
    speedup: float,
    *,
    multiple: int = 8,
    points: int = 8,
    rounds: int = 5,
) -> dict[str, int]:
    """Per-weight ranks whose compact model should run ``speedup`` times faster than ``model``'s.

    ``example_input`` sets the batch size the timings are for. Each module holding one
    factored weight with a pair form (Linear, Conv, Conv1D) is timed dense and
    as a pair at up to ``points`` ranks (multiples of ``multiple``); a layer's time at a rank is
    the faster of the two, as ``compact(choose="measured")`` deploys it. Ops outside the SVD
    layers (norms, activations, pooling) are measured once and count as fixed. Greedy: each
    step takes, over all layers, the rank jump with the least relative energy lost per second
    saved. Timings are of torch eager on this machine; pass the result to ``prune(rank=...)``
    and compact with ``choose="measured"``.

    Raises:
        ValueError: ``speedup`` <= 1, a bad ``multiple``/``points``, no factored weights, or a
            speedup out of reach even at the smallest ranks.
    """
    if not speedup > 1:
        raise ValueError(f"speedup must be > 1, got {speedup!r}")
    for name, value in (("multiple", multiple), ("points", points), ("rounds", rounds)):
        check_positive_int(name, value)
    weights = require_factored_weights(model)
    trace = trace_forward(model, example_input)
    layers = []  # the weights that can be timed alone: one per swappable module with a pair form
    for fqn, handles in by_module(weights).items():
        (param, layer), *more = handles.items()
        shape = trace.shapes.get(fqn)
        if not more and shape is not None and can_swap(layer.module, fqn, trace.read_outside) \
                and kind_for(layer.module).pair_macs(layer.module, param, shape, 1) is not None:
            layers.append((fqn, layer))
    shapes = trace.shapes
    deployed = compact(model, example_input).eval()
    with torch.no_grad():
        (total,) = median_seconds([deployed], example_input, rounds)

    times: dict[str, dict[int, float]] = {}  # layer -> rank -> seconds of its faster form
    energy: dict[str, torch.Tensor] = {}  # layer -> cumulative share of sum(s^2) kept, by rank
    ranks: dict[str, int] = {}
    for fqn, layer in layers:
        name = layer.name
        grid = rank_grid(layer.rank, multiple, points)
        probe = grid + ([layer.rank] if layer.rank < layer.full_rank else [])
        dense_s, pair_s = layer_times(layer, shapes[fqn], probe, rounds)
        measured = {r: min(dense_s, pair_s[r]) for r in grid}
        measured[layer.rank] = min(dense_s, pair_s[layer.rank]) if layer.rank < layer.full_rank else dense_s
        times[name] = _non_decreasing(measured)
        squares = layer.s.detach().double().pow(2).sort(descending=True).values
        energy[name] = torch.cat([squares.new_zeros(1), squares.cumsum(0)]) / (float(squares.sum()) or 1.0)
        ranks[name] = layer.rank
    if not ranks:
        raise ValueError("no factored weight can be timed alone (one per Linear/Conv/Conv1D module with a pair form)")

    # Layers timed alone can add up to more than the whole model (call overhead, cold caches);
    # then nothing else is left to count and the target applies to their sum, as a ratio.
    current = sum(times[name][ranks[name]] for name in ranks)
    fixed = max(total - current, 0.0)
    budget = (current + fixed) / speedup - fixed
    floor = sum(min(t.values()) for t in times.values())
    if floor > budget:
        reachable = (current + fixed) / (floor + fixed)
        raise ValueError(f"a {speedup:g}x speedup is out of reach here: even the fastest ranks measure "
                         f"{reachable:.2f}x")  # fmt: skip
    while current > budget:
        best: tuple[float, str, int] | None = None
        for name, rank in ranks.items():
            for low in (r for r in times[name] if r < rank):
                saved = times[name][rank] - times[name][low]
                if saved > 0:
                    score = float(energy[name][rank] - energy[name][low]) / saved
                    if best is None or score < best[0]:
                        best = (score, name, low)
        if best is None:  # unreachable: the floor check above guarantees a saving jump exists
            raise AssertionError("no rank jump saves time although the floor is within budget")
        _, name, low = best
        current -= times[name][ranks[name]] - times[name][low]
        ranks[name] = low
    return ranks


def _non_decreasing(times: dict[int, float]) -> dict[int, float]:
    """Time as a function of rank, made non-decreasing (a smaller rank is never slower):
    each rank takes the least time measured at it or any larger rank, which removes
    timing noise without inventing savings no measurement showed."""
    result, running = {}, float("inf")
    for rank in sorted(times, reverse=True):
        running = min(running, times[rank])
        result[rank] = running
    return result
