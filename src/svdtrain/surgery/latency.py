"""Measured time as a cost of ranks, for a speedup target instead of a MACs budget.

A MACs budget spends its cuts where MACs are, and on a CPU that is often where time is not:
a 16-channel 3x3 conv over a 32x32 map takes about as long at 6 output channels as at 16,
and the pair adds a second op. Here each layer's dense form and its pair at a grid of ranks
are timed on the layer's real input (torch eager, this machine, this batch size), and the
greedy allocator drops singular values where they buy the most time per unit of energy lost.
"""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.layers import FactoredWeight, kind_for
from svdtrain.linalg import check_positive_int
from svdtrain.surgery.allocate import Costs, RankCosts, rank_steps
from svdtrain.surgery.compact import compact, deploy_one
from svdtrain.surgery.macs import Inputs
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
    layer: FactoredWeight, input_shape: torch.Size, ranks: list[int], rounds: int, compiled: bool = False
) -> tuple[float, dict[int, float]]:
    """Median seconds of the dense form and of the pair at each of ``ranks``, timed interleaved
    (each compiled if ``compiled``)."""
    inputs = layer.kind.sample_inputs(layer.module, input_shape, layer.U)
    candidates = [_form_at(layer, None), *(_form_at(layer, r) for r in ranks)]
    dense_s, *pair_s = median_seconds(candidates, inputs, rounds, compiled=compiled)
    return dense_s, dict(zip(ranks, pair_s))


def measured_costs(
    model: nn.Module, example_input: Inputs, *, multiple: int = 8, points: int = 8, rounds: int = 5,
    compiled: bool = False,
) -> Costs:  # fmt: skip
    """Seconds of the model's forward on ``example_input`` as a cost of its weights' ranks.

    ``example_input`` sets the batch size the timings are for. Each module holding one
    factored weight with a pair form (Linear, Conv, Conv1D) is timed dense and as a pair at
    up to ``points`` ranks (multiples of ``multiple``); a layer's time at a rank is the faster
    of the two, as ``compact(choose="measured")`` deploys it. Ops outside those layers (norms,
    activations, pooling) are measured once and are ``rest``. Timings are of torch eager where
    the model is, or with ``compiled`` of each form and the whole model under ``torch.compile``
    (about 1 + ``points`` compiles per layer); the model is not changed.

    Raises:
        ValueError: a bad ``multiple``/``points``/``rounds``, no factored weights, or none that
            can be timed alone.
    """
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
    if not layers:
        raise ValueError("no factored weight can be timed alone (one per Linear/Conv/Conv1D module with a pair form)")
    deployed = compact(model, example_input).eval()
    with torch.no_grad():
        (total,) = median_seconds([deployed], example_input, rounds, compiled=compiled)

    times: dict[str, RankCosts] = {}
    for fqn, layer in layers:
        grid = rank_grid(layer.rank, multiple, points)
        probe = grid + ([layer.rank] if layer.rank < layer.full_rank else [])
        dense_s, pair_s = layer_times(layer, trace.shapes[fqn], probe, rounds, compiled)
        measured = {r: min(dense_s, pair_s[r]) for r in grid}
        measured[layer.rank] = min(dense_s, pair_s[layer.rank]) if layer.rank < layer.full_rank else dense_s
        times[layer.name] = RankCosts(measured)
    # Layers timed alone can add up to more than the whole model (call overhead, cold caches);
    # then nothing else is left to count and a target applies to their sum, as a ratio.
    timed = Costs(times).total({layer.name: layer.rank for _, layer in layers})
    return Costs(times, rest=max(total - timed, 0.0))
