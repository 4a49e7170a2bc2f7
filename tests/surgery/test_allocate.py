"""The one greedy allocator, on cost tables built by hand (hand-computed answers)."""

import pytest
import torch

from svdtrain.surgery.allocate import Costs, RankCosts, greedy_ranks, monotone, rank_steps


def _flat(n: int) -> torch.Tensor:
    return torch.ones(n)


def test_cuts_the_least_energy_per_cost_first_and_stops_at_the_budget():
    # a: squares 9, 1, 1, 1 of 12 (each of its last three values costs 1/12 per 2 saved);
    # b: flat, 1/4 of its energy per value, and no rank 3 on its table
    costs = Costs({"a": RankCosts({4: 8, 3: 6, 2: 4, 1: 2}), "b": RankCosts({4: 8, 2: 4, 1: 2})}, rest=1)
    scores = {"a": torch.tensor([3.0, 1.0, 1.0, 1.0]), "b": _flat(4)}
    assert costs.total({"a": 4, "b": 4}) == 17 and costs.floor() == 5
    assert greedy_ranks(costs, scores, {"a": 4, "b": 4}, 17) == {"a": 4, "b": 4}
    assert greedy_ranks(costs, scores, {"a": 4, "b": 4}, 12) == {"a": 1, "b": 4}
    assert greedy_ranks(costs, scores, {"a": 4, "b": 4}, 9) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="out of reach"):
        greedy_ranks(costs, scores, {"a": 4, "b": 4}, 4)


def test_ties_cut_the_larger_rank_first():
    table = {4: 4.0, 3: 3.0, 2: 2.0, 1: 1.0}
    costs = Costs({"a": RankCosts(table), "b": RankCosts(table)})
    scores = {"a": _flat(4), "b": _flat(4)}
    assert greedy_ranks(costs, scores, {"a": 4, "b": 4}, 7) == {"a": 3, "b": 4}
    assert greedy_ranks(costs, scores, {"a": 4, "b": 4}, 6) == {"a": 3, "b": 3}  # b's 4 -> 3 before a's 3 -> 2


def test_ranks_that_save_nothing_are_jumped_over():
    """A pair slower than dense down to rank 2: the only cut worth making goes straight there."""
    costs = Costs({"a": RankCosts({8: 10.0, 6: 10.0, 4: 10.0, 2: 4.0})})
    assert greedy_ranks(costs, {"a": _flat(8)}, {"a": 8}, 5) == {"a": 2}


def test_the_guide_orders_and_a_weight_whose_cuts_bought_nothing_keeps_its_rank():
    # a sits above its break-even: its first cut saves no deployed cost, though it is the cheapest
    # by the guide; b's first cut then meets the budget, and a goes back to rank 4
    a = RankCosts(deployed={4: 6, 3: 6, 2: 4, 1: 2}, guide={4: 8, 3: 6, 2: 4, 1: 2})
    b = RankCosts({4: 8, 3: 6, 2: 4, 1: 2})
    scores = {"a": torch.tensor([1.0, 1.0, 1.0, 0.01]), "b": torch.tensor([8.0, 4.0, 2.0, 1.0])}
    assert greedy_ranks(Costs({"a": a, "b": b}), scores, {"a": 4, "b": 4}, 12) == {"a": 4, "b": 3}


def test_weights_without_costs_keep_their_rank_and_inputs_are_not_changed():
    costs = Costs({"a": RankCosts({2: 2.0, 1: 1.0})}, rest=3)
    ranks = {"a": 2, "frozen": 5}
    assert greedy_ranks(costs, {"a": _flat(2)}, ranks, 4) == {"a": 1, "frozen": 5}
    assert ranks == {"a": 2, "frozen": 5}


def test_no_weights_at_all():
    assert greedy_ranks(Costs({}, rest=3), {}, {}, 3) == {}
    with pytest.raises(ValueError, match="out of reach"):
        greedy_ranks(Costs({}, rest=3), {}, {}, 2)


def test_bad_inputs_are_named():
    costs = Costs({"a": RankCosts({2: 2.0, 1: 1.0})})
    with pytest.raises(ValueError, match="NaN or inf"):
        greedy_ranks(costs, {"a": torch.tensor([1.0, float("nan")])}, {"a": 2}, 1)
    with pytest.raises(ValueError, match=r"costs of 'a' lack its current rank 3"):
        greedy_ranks(costs, {"a": _flat(3)}, {"a": 3}, 1)


def test_tables_are_made_monotone():
    assert monotone({64: 10.0, 48: 11.0, 32: 6.0, 16: 7.0}) == {64: 10.0, 48: 10.0, 32: 6.0, 16: 6.0}
    assert RankCosts({1: 5.0, 2: 3.0}).deployed == {2: 3.0, 1: 3.0}  # a smaller rank never costs more


def test_rank_steps():
    assert rank_steps(5, 1) == [5, 4, 3, 2, 1]
    assert rank_steps(30, 8) == [30, 24, 16, 8]
    assert rank_steps(32, 8) == [32, 24, 16, 8]
