"""Meeting a MACs budget: one energy threshold (energy_for_macs) or greedy ranks (ranks_for_macs)."""

import copy

import pytest
import torch
from torch import nn

import svdtrain


def _model_with_spectra(decaying: torch.Tensor, flat: torch.Tensor) -> nn.Module:
    """Two 32x32 linear layers whose singular values are the given spectra."""
    model = svdtrain.decompose(nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32)))
    for layer, s in zip(model, (decaying, flat)):
        q1, _ = torch.linalg.qr(torch.randn(32, 32))
        q2, _ = torch.linalg.qr(torch.randn(32, 32))
        layer.U.data, layer.s.data, layer.Vh.data = q1, s.clone(), q2
    return model


@pytest.fixture
def model():
    return _model_with_spectra(0.7 ** torch.arange(32.0), torch.ones(32))


@pytest.mark.parametrize("factor", [1.5, 2.0, 4.0, 8.0])
def test_both_rules_meet_the_budget(model, factor):
    x = torch.randn(1, 32)
    budget = int(svdtrain.count_macs(model, x) / factor)
    ranks = svdtrain.ranks_for_macs(model, x, budget)
    assert all(1 <= r <= 32 for r in ranks.values())
    assert svdtrain.count_macs(_pruned(model, ranks), x) <= budget
    uniform = _copy(model)
    svdtrain.prune(uniform, energy=svdtrain.energy_for_macs(model, x, budget))
    assert svdtrain.count_macs(uniform, x) <= budget
    assert svdtrain.count_macs(svdtrain.compact(uniform, x), x) <= budget


def _copy(model):
    return copy.deepcopy(model)


def _pruned(model, ranks):
    pruned = _copy(model)
    svdtrain.prune(pruned, rank=ranks)
    return pruned


def test_greedy_cuts_where_energy_is_cheap(model):
    """A decaying spectrum loses little per dropped value; a flat one a lot: greedy cuts the first."""
    x = torch.randn(1, 32)
    ranks = svdtrain.ranks_for_macs(model, x, svdtrain.count_macs(model, x) // 2)
    assert ranks["0"] < 6 < ranks["1"]


def test_greedy_loses_no_more_relative_energy_than_one_threshold(model):
    x = torch.randn(1, 32)
    budget = svdtrain.count_macs(model, x) // 2

    def lost(pruned):
        return sum(1 - float(p.s.pow(2).sum() / o.s.pow(2).sum()) for p, o in zip(pruned, model))

    uniform = _copy(model)
    svdtrain.prune(uniform, energy=svdtrain.energy_for_macs(model, x, budget))
    assert lost(_pruned(model, svdtrain.ranks_for_macs(model, x, budget))) <= lost(uniform) + 1e-9


def test_layers_left_dense_keep_every_value(model):
    """Above the break-even rank a layer stays dense: dropping values there saves nothing."""
    x = torch.randn(1, 32)
    ranks = svdtrain.ranks_for_macs(model, x, svdtrain.count_macs(model, x) * 3 // 4)
    assert ranks["1"] == 32  # the flat layer is never worth cutting below break-even (16)


def test_unreachable_budget_is_a_clear_error(model):
    x = torch.randn(1, 32)
    with pytest.raises(ValueError, match="out of reach"):
        svdtrain.ranks_for_macs(model, x, 10)
    with pytest.raises(ValueError, match="out of reach"):
        svdtrain.energy_for_macs(model, x, 10)


def test_budget_already_met_changes_nothing(model):
    x = torch.randn(1, 32)
    total = svdtrain.count_macs(model, x)
    assert svdtrain.ranks_for_macs(model, x, total) == {"0": 32, "1": 32}
    assert svdtrain.energy_for_macs(model, x, total) == 0.0


@pytest.mark.parametrize("multiple", [4, 8])
@pytest.mark.parametrize("factor", [1.5, 2.0])
def test_rank_multiple_keeps_pruned_ranks_on_the_grid(model, factor, multiple):
    x = torch.randn(1, 32)
    budget = int(svdtrain.count_macs(model, x) / factor)
    ranks = svdtrain.ranks_for_macs(model, x, budget, multiple=multiple)
    assert all(r == 32 or r % multiple == 0 for r in ranks.values()), ranks
    assert svdtrain.count_macs(_pruned(model, ranks), x) <= budget


def test_rank_multiple_floor_is_one_block():
    model = _model_with_spectra(0.7 ** torch.arange(32.0), torch.ones(32))
    x = torch.randn(1, 32)  # rank 8 in both layers costs 2 * 8 * 64 MACs
    with pytest.raises(ValueError, match=r"out of reach: even rank 8 \(multiple=8\)"):
        svdtrain.ranks_for_macs(model, x, 1000, multiple=8)
    assert svdtrain.ranks_for_macs(model, x, 1024, multiple=8) == {"0": 8, "1": 8}


def test_rank_multiple_of_one_is_the_plain_greedy_rule(model):
    x = torch.randn(1, 32)
    budget = int(svdtrain.count_macs(model, x) / 2)
    assert svdtrain.ranks_for_macs(model, x, budget, multiple=1) == svdtrain.ranks_for_macs(model, x, budget)


def test_rank_multiple_drops_whole_blocks_of_the_smallest_values():
    # 30 values (dense: 900 MACs); the grid for multiple 8 is 30 -> 24 -> 16 -> 8
    model = svdtrain.decompose(nn.Sequential(nn.Linear(30, 30)))
    model[0].s.data = torch.linspace(1, 2, 30)
    x = torch.randn(1, 30)
    rank_cost = model[0].factored_macs(x.shape) / model[0].rank  # 60 MACs per kept value
    assert svdtrain.ranks_for_macs(model, x, int(rank_cost * 12), multiple=8) == {"0": 8}
    assert svdtrain.ranks_for_macs(model, x, int(rank_cost * 12)) == {"0": 12}


@pytest.mark.parametrize("multiple", [0, -8, 2.0, True])
def test_bad_rank_multiple_is_refused(model, multiple):
    with pytest.raises(ValueError, match="multiple"):
        svdtrain.ranks_for_macs(model, torch.randn(1, 32), 100, multiple=multiple)
