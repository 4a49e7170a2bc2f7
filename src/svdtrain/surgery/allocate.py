"""One greedy rank allocator for every cost: drop the singular values that lose the least
relative energy per unit of cost saved, across all weights, until a budget is met.

The cost is pluggable (Torch-Pruning's split between importance and pruner): MACs per rank
(:func:`svdtrain.surgery.budget.macs_costs`), seconds measured per rank
(:func:`svdtrain.surgery.latency.measured_costs`), or any table a caller builds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def rank_steps(rank: int, multiple: int) -> list[int]:
    """The ranks a weight may take, largest first: its rank, then multiples of ``multiple`` below it."""
    return [rank, *range((rank - 1) // multiple * multiple, 0, -multiple)] if multiple > 1 else list(range(rank, 0, -1))


def monotone(table: dict[int, float]) -> dict[int, float]:
    """Cost as a function of rank, made non-decreasing (a smaller rank never costs more): each
    rank takes the least cost found at it or any larger rank, which removes timing noise
    without inventing savings no measurement showed. Keys come out largest first."""
    result, running = {}, float("inf")
    for rank in sorted(table, reverse=True):
        running = min(running, table[rank])
        result[rank] = running
    return result


@dataclass
class RankCosts:
    """One weight's cost at each rank it may take, its current rank included.

    ``deployed`` is what the budget counts (say the cheaper of the dense form and the pair).
    ``guide``, when given, is the cost the order of cuts follows instead: for MACs the pair's,
    which falls with every value dropped, also above the break-even rank where the deployed
    cost is still the dense one. Both are made :func:`monotone`.
    """

    deployed: dict[int, float]
    guide: dict[int, float] | None = None

    def __post_init__(self) -> None:
        self.deployed = monotone(self.deployed)
        self.guide = monotone(self.guide) if self.guide is not None else self.deployed


@dataclass
class Costs:
    """A model's cost as a function of its weights' ranks: ``rest`` (what no rank changes:
    other layers, fixed overheads) plus each weight's in ``weights``."""

    weights: dict[str, RankCosts]
    rest: float = 0.0

    def total(self, ranks: dict[str, int]) -> float:
        return self.rest + sum(costs.deployed[ranks[name]] for name, costs in self.weights.items())

    def floor(self) -> float:
        """The least total any ranks reach: every weight at its cheapest rank."""
        return self.rest + sum(min(costs.deployed.values()) for costs in self.weights.values())


def greedy_ranks(
    costs: Costs, scores: dict[str, torch.Tensor], ranks: dict[str, int], budget: float
) -> dict[str, int]:
    """Ranks, lowered from ``ranks``, at which ``costs`` total at most ``budget``.

    Cuts are taken in increasing order of relative energy lost (s_i^2 over the weight's sum of
    s^2, ``scores`` being the s) per unit of guide cost saved. Within a weight the cuts follow
    the lower convex hull of (cost saved, energy lost) from its current rank, so each is the
    cheapest step left where the weight stands, jumping past ranks that save nothing (a pair
    slower than dense), and one sort orders every weight's cuts. A weight whose deployed cost
    ends no lower than it started keeps its rank: its cuts bought nothing. Ties go to the cut
    that keeps the larger rank. The inputs are not changed; weights not in ``costs`` keep
    their rank.

    Raises:
        ValueError: ``scores`` hold NaN or inf, a weight's costs lack its current rank, or the
            budget is out of reach (check :meth:`Costs.floor` first to word that for the target).
    """
    start, ranks = dict(ranks), dict(ranks)
    cuts: list[tuple[float, int, int, str]] = []  # (energy lost per cost saved, -new rank, weight index, weight)
    for index, (name, weight) in enumerate(costs.weights.items()):
        if ranks[name] not in weight.deployed:
            raise ValueError(f"costs of {name!r} lack its current rank {ranks[name]}")
        for score, low in _hull_cuts(weight.guide, _kept_energy(name, scores[name]), ranks[name]):
            cuts.append((score, -low, index, name))
    total = costs.total(ranks)
    for _, low, _, name in sorted(cuts):
        if total <= budget:
            break
        deployed = costs.weights[name].deployed
        total += deployed[-low] - deployed[ranks[name]]
        ranks[name] = -low
    if total > budget:
        raise ValueError(f"a budget of {budget:,.6g} is out of reach: the cheapest ranks cost {total:,.6g}")
    for name, weight in costs.weights.items():
        if weight.deployed[ranks[name]] >= weight.deployed[start[name]]:
            ranks[name] = start[name]
    return ranks


def _kept_energy(name: str, s: torch.Tensor) -> torch.Tensor:
    """kept[r]: the share of sum(s^2) the r largest values hold (kept[0] = 0)."""
    if not torch.isfinite(s).all():
        raise ValueError(f"singular values of {name!r} contain NaN or inf; training diverged")
    squares = s.detach().double().pow(2).sort(descending=True).values
    return torch.cat([squares.new_zeros(1), squares.cumsum(0)]) / (float(squares.sum()) or 1.0)


def _hull_cuts(guide: dict[int, float], kept: torch.Tensor, start: int) -> list[tuple[float, int]]:
    """(energy lost per cost saved, new rank) of each cut along the lower convex hull of the
    points (cost saved, energy lost) of the ranks below ``start``, in order. Collinear points
    stay vertices, so a run of equal scores is cut one step at a time."""

    def point(rank: int) -> tuple[float, float]:
        return guide[start] - guide[rank], float(kept[start] - kept[rank])

    hull, last_saved = [start], 0.0
    for rank in (r for r in guide if r < start):  # largest first: cost saved never falls
        saved, lost = point(rank)
        if saved <= last_saved:
            continue  # saves no more than a larger rank, and loses at least as much
        last_saved = saved
        while len(hull) > 1:
            (x0, y0), (x1, y1) = point(hull[-2]), point(hull[-1])
            if (y1 - y0) * (saved - x0) <= (lost - y0) * (x1 - x0):
                break  # hull[-1] lies on or below the line to this point: it stays
            hull.pop()
        hull.append(rank)
    return [(float(kept[high] - kept[low]) / (guide[high] - guide[low]), low) for high, low in zip(hull, hull[1:])]
