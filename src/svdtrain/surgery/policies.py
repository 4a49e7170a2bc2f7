"""Rank policies: objects that decide each factored weight's rank, for :func:`svdtrain.prune`.

A policy reads the weights' scores (|s|, or with a calibration their output spectra, from
:func:`svdtrain.surgery.ranks.spectra`) and, for a target, a cost (MACs or measured time);
it never changes the model. ``prune(model, policy)`` applies what it decides.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from svdtrain.linalg import check_energy, check_positive_int, check_threshold, energy_rank, threshold_rank
from svdtrain.surgery.allocate import Costs, RankCosts, greedy_ranks
from svdtrain.surgery.budget import energy_for_macs, macs_costs
from svdtrain.surgery.latency import measured_costs
from svdtrain.surgery.macs import Inputs, count_macs
from svdtrain.surgery.ranks import spectra
from svdtrain.surgery.timing import deployed_as
from svdtrain.surgery.walk import require_factored_weights

if TYPE_CHECKING:
    from svdtrain.surgery.calibrate import Calibration


class RankPolicy(Protocol):
    """Decides ranks; ``prune`` applies them."""

    def ranks(self, model: nn.Module, calibration: Calibration | None = None) -> dict[str, int]:
        """{weight name: rank} for ``model``'s factored weights (those left out keep theirs).
        The model is not changed."""
        ...


@dataclass(frozen=True)
class Energy:
    """Keep per weight the fewest largest values holding >= 1 - ``fraction`` of sum(s^2) (the
    paper's rule; with a calibration, of output energy); 0 keeps every value."""

    fraction: float

    def __post_init__(self) -> None:
        check_energy(self.fraction)

    def ranks(self, model: nn.Module, calibration: Calibration | None = None) -> dict[str, int]:
        return {name: energy_rank(values, self.fraction) for name, values in spectra(model, calibration).items()}


@dataclass(frozen=True)
class Threshold:
    """Drop the values with |s| < ``value`` (at least rank 1 stays)."""

    value: float

    def __post_init__(self) -> None:
        check_threshold(self.value)

    def ranks(self, model: nn.Module, calibration: Calibration | None = None) -> dict[str, int]:
        if calibration is not None:
            raise ValueError("Threshold compares |s| to a number; with a calibration give Energy or Ranks")
        return {name: threshold_rank(layer.s, self.value) for name, layer in require_factored_weights(model).items()}


@dataclass(frozen=True)
class Ranks:
    """Keep this many values: an int for every weight, or {weight name: rank} (weights not
    named are left as they are). A rank above a weight's current rank keeps it whole; ranks
    are checked when applied, naming the weight."""

    rank: int | dict[str, int]

    def ranks(self, model: nn.Module, calibration: Calibration | None = None) -> dict[str, int]:
        if isinstance(self.rank, dict):
            return dict(self.rank)
        return {name: self.rank for name in require_factored_weights(model)}


@dataclass(frozen=True)
class MacsBudget:
    """At most ``max_macs`` MACs on ``example`` (or the model's MACs as it would deploy now,
    cut by ``reduction``; give one of the two).

    ``allocation="greedy"`` drops, across weights, the values that lose the least relative
    energy per MAC saved (:func:`svdtrain.surgery.allocate.greedy_ranks`); with ``multiple``
    > 1 every pruned rank is a multiple of it, as CPU and GPU conv kernels run channels in
    blocks of 8 or 16. ``allocation="energy"`` finds the one energy threshold for all weights
    (the paper's rule) that meets the budget. Weights that always deploy dense (an LSTM's
    W_hh, MultiheadAttention's out_proj) keep every value: dropping there saves nothing.

    Example:
        >>> prune(model, MacsBudget(x, reduction=2.0, multiple=8))
    """

    example: Inputs = field(repr=False)
    _: KW_ONLY
    max_macs: int | None = None
    reduction: float | None = None
    allocation: str = "greedy"
    multiple: int = 1

    def __post_init__(self) -> None:
        if (self.max_macs is None) == (self.reduction is None):
            raise ValueError("MacsBudget takes one of max_macs= and reduction=")
        if self.max_macs is not None:
            check_positive_int("max_macs", self.max_macs)
        if self.reduction is not None and not self.reduction > 1:
            raise ValueError(f"reduction must be > 1, got {self.reduction!r}")
        if self.allocation not in ("greedy", "energy"):
            raise ValueError(f"allocation must be 'greedy' or 'energy', got {self.allocation!r}")
        check_positive_int("multiple", self.multiple)
        if self.multiple > 1 and self.allocation != "greedy":
            raise ValueError("multiple= applies to allocation='greedy' only")

    def ranks(self, model: nn.Module, calibration: Calibration | None = None) -> dict[str, int]:
        layers = require_factored_weights(model)
        budget = self.max_macs if self.max_macs is not None else int(count_macs(model, self.example) / self.reduction)
        scores = spectra(model, calibration)
        if self.allocation == "energy":
            energy = energy_for_macs(model, self.example, budget, scores)
            return {name: energy_rank(values, energy) for name, values in scores.items()}
        costs = macs_costs(model, self.example, multiple=self.multiple)
        if costs.floor() > budget:
            at = "rank 1" if self.multiple == 1 else f"rank {self.multiple} (multiple={self.multiple})"
            raise ValueError(f"a budget of {budget:,} MACs is out of reach: even {at} per layer costs "
                             f"{round(costs.floor()):,}")  # fmt: skip
        return greedy_ranks(costs, scores, {name: layer.rank for name, layer in layers.items()}, budget)


@dataclass(frozen=True)
class ParamsBudget:
    """The factored weights together hold at most ``share`` of their dense parameters (m x n
    each) in their factors (m + n + 1 per rank): 1.0 trains the SVD form with no more
    parameters, gradients and optimizer state than the dense model. Values are dropped across
    weights by least relative energy lost per parameter saved (the greedy allocator of
    :class:`MacsBudget`): a lean start for SVD training, which then prunes further.

    Example:
        >>> prune(model, ParamsBudget(1.0))  # right after decompose(model)
    """

    share: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float)) or not 0 < self.share < float("inf"):
            raise ValueError(f"share must be a number > 0, got {self.share!r}")

    def ranks(self, model: nn.Module, calibration: Calibration | None = None) -> dict[str, int]:
        layers = require_factored_weights(model)
        shapes = {name: layer.shape for name, layer in layers.items()}
        budget = self.share * sum(m * n for m, n in shapes.values())
        costs = Costs({name: RankCosts(deployed={r: (m + n + 1) * r for r in range(layers[name].rank, 0, -1)})
                       for name, (m, n) in shapes.items()})  # fmt: skip
        current = {name: layer.rank for name, layer in layers.items()}
        if costs.total(current) <= budget:
            return current
        if costs.total(dict.fromkeys(current, 1)) > budget:
            raise ValueError(f"a budget of {self.share:g} of the dense parameters is out of reach: even rank 1 per "
                             f"weight holds more")  # fmt: skip
        return greedy_ranks(costs, spectra(model, calibration), current, budget)


def gradual_budget(dense_macs: int, reduction: float, done: int, total: int) -> int:
    """The MACs budget of the ``done``-th of ``total`` gradual cuts towards ``reduction`` x fewer
    MACs: (1/reduction)^(done/total) of ``dense_macs``, so each cut shrinks the model by the same
    factor and the last reaches the target."""
    return int(dense_macs * reduction ** (-done / total))


@dataclass(frozen=True)
class Speedup:
    """Ranks whose compact model should run ``factor`` times faster, as measured on
    ``example`` (which sets the batch size) by :func:`svdtrain.surgery.latency.measured_costs`,
    on a copy of the model moved to ``device`` and cast to ``dtype`` when given (the example
    goes with it; token ids stay integers), in torch eager or, with ``compiled``, under
    ``torch.compile``: time where and as you will deploy. Values are dropped where they buy the
    most time per unit of relative energy lost. Only weights that can be timed alone get a
    rank; compact the pruned model with ``choose="measured"`` (and the same ``compiled``).
    """

    factor: float
    example: Inputs = field(repr=False)
    _: KW_ONLY
    multiple: int = 8
    points: int = 8
    rounds: int = 5
    device: str | torch.device | None = None
    dtype: torch.dtype | None = None
    compiled: bool = False

    def __post_init__(self) -> None:
        if not self.factor > 1:
            raise ValueError(f"speedup must be > 1, got {self.factor!r}")
        for name in ("multiple", "points", "rounds"):
            check_positive_int(name, getattr(self, name))

    def ranks(self, model: nn.Module, calibration: Calibration | None = None) -> dict[str, int]:
        costs, start = self._measured(model)
        now = costs.total(start)
        self._check_reach(now / costs.floor())
        return greedy_ranks(costs, spectra(model, calibration), start, now / self.factor)

    def check_reach(self, model: nn.Module) -> None:
        """Refuse, before any training, a factor even the fastest measured ranks miss."""
        costs, start = self._measured(model)
        self._check_reach(costs.total(start) / costs.floor())

    def _measured(self, model: nn.Module) -> tuple[Costs, dict[str, int]]:
        layers = require_factored_weights(model)
        timed, example = deployed_as(model, self.example, self.device, self.dtype)
        costs = measured_costs(timed, example, multiple=self.multiple, points=self.points, rounds=self.rounds,
                               compiled=self.compiled)  # fmt: skip
        return costs, {name: layers[name].rank for name in costs.weights}

    def _check_reach(self, reach: float) -> None:
        if reach < self.factor:
            raise ValueError(f"a {self.factor:g}x speedup is out of reach here: even the fastest ranks measure "
                             f"{reach:.2f}x")  # fmt: skip
