"""MACs as a cost of ranks: what each factored weight's rank costs on an example input, for
the greedy allocator, and the one energy threshold (the paper's rule) that meets a budget."""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.layers import kind_for
from svdtrain.linalg import energy_rank
from svdtrain.surgery.allocate import Costs, RankCosts, rank_steps
from svdtrain.surgery.macs import Inputs, count_macs, deployed_macs
from svdtrain.surgery.plan import can_swap
from svdtrain.surgery.ranks import keep_ranks_
from svdtrain.surgery.trace import Trace, trace_forward
from svdtrain.surgery.walk import copy_model, require_factored_weights


def energy_for_macs(
    model: nn.Module, example_input: Inputs, max_macs: int, scores: dict[str, torch.Tensor], *,
    tolerance: float = 1e-4,
) -> float:
    """The smallest energy whose rule (:func:`svdtrain.linalg.energy_rank` on ``scores``)
    brings the model to at most ``max_macs``.

    MACs only fall as the energy grows, so a bisection over [0, 1) finds it; the model is
    not changed.

    Raises:
        ValueError: the budget is not reachable even at rank 1 everywhere, or no factored weights.
    """
    require_factored_weights(model)
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")

    def _macs_at(energy: float) -> int:
        trial = copy_model(model)  # only the ranks decide MACs: plain truncation to them is enough
        keep_ranks_(trial, {name: energy_rank(v, energy) for name, v in scores.items()})
        return count_macs(trial, example_input)

    if _macs_at(0.0) <= max_macs:
        return 0.0
    low, high = 0.0, 1.0 - 1e-12
    floor = _macs_at(high)
    if floor > max_macs:
        raise ValueError(f"a budget of {max_macs:,} MACs is out of reach: even rank 1 per layer costs {floor:,}")
    while high - low > tolerance:
        middle = (low + high) / 2
        if _macs_at(middle) <= max_macs:
            high = middle
        else:
            low = middle
    return high


def _costs(model: nn.Module, trace: Trace) -> dict[str, tuple[int, float]]:
    """{weight: (MACs of its dense product, MACs one rank costs in its pair)} per forward, for
    the weights whose rank changes their MACs; weights that always deploy dense (an LSTM's
    W_hh, MultiheadAttention's out_proj) are left out."""
    costs: dict[str, tuple[int, float]] = {}
    for name, layer in require_factored_weights(model).items():
        fqn, module = name[: -len(layer.param)].rstrip("."), layer.module
        shapes, kind = [shape for shape, _ in trace.calls.get(fqn, [])], kind_for(module)  # one per call
        if not shapes or None in shapes or kind.pair_macs(module, layer.param, shapes[0], 1) is None \
                or not can_swap(module, fqn, trace.read_outside):
            continue  # deploys dense whatever its rank: dropping values saves no MACs
        costs[name] = (sum(kind.dense_macs(module, layer.param, shape) for shape in shapes),
                       sum(kind.pair_macs(module, layer.param, shape, 1) for shape in shapes))  # fmt: skip
    return costs


def macs_per_rank(model: nn.Module, example_input: Inputs) -> dict[str, float]:
    """MACs one rank costs in each factored weight's deployed pair on ``example_input``: what
    dropping one singular value there saves (0 where the weight always deploys dense)."""
    costs = _costs(model, trace_forward(model, example_input))
    return {name: float(costs[name][1]) if name in costs else 0.0 for name in require_factored_weights(model)}


def macs_costs(model: nn.Module, example_input: Inputs, *, multiple: int = 1) -> Costs:
    """The model's MACs on ``example_input`` as a cost of its weights' ranks, at the ranks each
    may take (its own, then multiples of ``multiple`` below it).

    A weight deploys as the cheaper of dense and the pair, so that is what the budget counts;
    the cuts follow the pair's MACs, which fall with every value dropped, so values are
    dropped in order of energy per MAC even above the break-even rank. Weights that always
    deploy dense (an LSTM's W_hh, MultiheadAttention's out_proj) save nothing by dropping
    and are left out (their MACs are in ``rest``).
    """
    layers = require_factored_weights(model)
    trace = trace_forward(model, example_input)
    weights = {}
    for name, (dense, per_rank) in _costs(model, trace).items():
        steps = rank_steps(layers[name].rank, multiple)
        weights[name] = RankCosts(deployed={r: min(dense, per_rank * r) for r in steps},
                                  guide={r: per_rank * r for r in steps})  # fmt: skip
    now = Costs(weights).total({name: layer.rank for name, layer in layers.items()})
    return Costs(weights, rest=sum(deployed_macs(model, trace).values()) - now)
