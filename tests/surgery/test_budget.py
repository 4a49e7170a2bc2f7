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
