"""Meeting a MACs budget without hand-picked ranks: one energy threshold for every layer
(the paper's rule), or a greedy per-layer allocation."""

from __future__ import annotations

import torch
from torch import nn

from typing import TYPE_CHECKING

from svdtrain.layers import kind_for
from svdtrain.linalg import check_positive_int, energy_rank
from svdtrain.surgery.macs import count_macs, deployed_macs
from svdtrain.surgery.plan import can_swap
from svdtrain.surgery.prune import prune, spectra
from svdtrain.surgery.trace import Trace, trace_forward
from svdtrain.surgery.walk import copy_model, require_factored_weights

if TYPE_CHECKING:
    from svdtrain.surgery.calibrate import Calibration


def energy_for_macs(
    model: nn.Module, example_input: torch.Tensor | tuple, max_macs: int, *, tolerance: float = 1e-4,
    calibration: Calibration | None = None,
) -> float:
    """The smallest energy whose pruning brings the model to at most ``max_macs``.

    MACs only fall as the energy grows, so a bisection over [0, 1) finds it; the model is
    not changed. Pass the result to :func:`prune` (with the same ``calibration``, which makes
    the energy count output energy on the calibration inputs).

    Raises:
        ValueError: the budget is not reachable even at rank 1 everywhere, or no factored weights.
    """
    require_factored_weights(model)
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    values = spectra(model, calibration)

    def _macs_at(model: nn.Module, energy: float, example_input: torch.Tensor | tuple) -> int:
        trial = copy_model(model)  # only the ranks decide MACs: plain truncation to them is enough
        prune(trial, rank={name: energy_rank(v, energy) for name, v in values.items()})
        return count_macs(trial, example_input)

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


def rank_steps(rank: int, multiple: int) -> list[int]:
    """The ranks a layer may take, largest first: its rank, then multiples of ``multiple`` below it."""
    return [rank, *range((rank - 1) // multiple * multiple, 0, -multiple)] if multiple > 1 else list(range(rank, 0, -1))


def _costs(model: nn.Module, trace: Trace) -> dict[str, tuple[int, float]]:
    """{weight: (MACs of its dense product, MACs one rank costs in its pair)} per forward, for
    the weights whose rank changes their MACs; weights that always deploy dense (an LSTM's
    W_hh, MultiheadAttention's projections) are left out."""
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


def macs_per_rank(model: nn.Module, example_input: torch.Tensor | tuple) -> dict[str, float]:
    """MACs one rank costs in each factored weight's deployed pair on ``example_input``: what
    dropping one singular value there saves (0 where the weight always deploys dense)."""
    costs = _costs(model, trace_forward(model, example_input))
    return {name: float(costs[name][1]) if name in costs else 0.0 for name in require_factored_weights(model)}


def ranks_for_macs(
    model: nn.Module, example_input: torch.Tensor | tuple, max_macs: int, *, multiple: int = 1,
    calibration: Calibration | None = None,
) -> dict[str, int]:
    """Per-weight ranks that meet ``max_macs`` while dropping the least relative energy per MAC.

    A global greedy alternative to one energy threshold for all layers: singular values are
    dropped in increasing order of (s_i^2 / the weight's sum s^2) / (MACs one rank costs in that
    weight's pair), until the budget is met. Weights left above their dense/pair break-even, and
    weights that always deploy dense (an LSTM's W_hh, MultiheadAttention's projections), save
    nothing by dropping, so they keep every value. With ``multiple`` > 1 every pruned rank is
    a multiple of it (values are dropped in blocks), since CPU and GPU conv kernels run channel
    counts in blocks of 8 or 16 and waste the rest. The model is not changed; pass the result
    to ``prune(model, rank=...)``. With ``calibration`` the energy is the weights' output
    energy on the calibration inputs (pass the same calibration to prune).

    Raises:
        ValueError: the budget is not reachable, or no factored weights, or ``multiple`` < 1.
    """
    check_positive_int("multiple", multiple)
    layers = require_factored_weights(model)
    for name, layer in layers.items():
        if not torch.isfinite(layer.s).all():
            raise ValueError(f"singular values of {name!r} contain NaN or inf; training diverged")
    values = spectra(model, calibration)
    trace = trace_forward(model, example_input)
    current = sum(deployed_macs(model, trace).values())
    costs = _costs(model, trace)
    dense_cost = {name: dense for name, (dense, _) in costs.items()}
    rank_cost = {name: per_rank for name, (_, per_rank) in costs.items()}
    ranks = {name: layer.rank for name, layer in layers.items()}
    candidates: list[tuple[float, int, str]] = []  # (relative energy per MAC, new rank, weight)
    for name in costs:
        layer = layers[name]
        squares = values[name].double().pow(2).sort(descending=True).values
        energy = float(squares.sum()) or 1.0
        steps = rank_steps(layer.rank, multiple)
        for high, low in zip(steps, steps[1:]):
            dropped = float(squares[low:high].sum()) / energy
            candidates.append((dropped / (rank_cost[name] * (high - low)), low, name))

    def cost(name: str, rank: int) -> float:
        return min(dense_cost[name], rank_cost[name] * rank)

    # Within a layer, blocks of smaller values score lower, so its steps apply in order.
    for _, low, name in sorted(candidates, key=lambda c: (c[0], -c[1])):
        if current <= max_macs:
            break
        current += cost(name, low) - cost(name, ranks[name])
        ranks[name] = low
    if current > max_macs:
        floor = "rank 1" if multiple == 1 else f"rank {multiple} (multiple={multiple})"
        raise ValueError(
            f"a budget of {max_macs:,} MACs is out of reach: even {floor} per layer costs {round(current):,}"
        )
    for name, layer in layers.items():  # still dense: dropping values there bought nothing
        if name in dense_cost and cost(name, ranks[name]) >= dense_cost[name]:
            ranks[name] = layer.rank
    return ranks
