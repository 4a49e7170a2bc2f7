"""Meeting a MACs budget: MacsBudget with one energy threshold (energy_for_macs) or greedy ranks."""

import copy

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain.layers import kind_for
from svdtrain.surgery.budget import energy_for_macs
from svdtrain.surgery.ranks import spectra


def _model_with_spectra(decaying: torch.Tensor, flat: torch.Tensor) -> nn.Module:
    """Two 32x32 linear layers whose singular values are the given spectra."""
    model = svdtrain.decompose(nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32)))
    for handle, s in zip(svdtrain.factored_weights(model).values(), (decaying, flat)):
        q1, _ = torch.linalg.qr(torch.randn(32, 32))
        q2, _ = torch.linalg.qr(torch.randn(32, 32))
        with torch.no_grad():
            handle.U.copy_(q1), handle.s.copy_(s), handle.Vh.copy_(q2)
    return model


def _handles(model):
    return list(svdtrain.factored_weights(model).values())


@pytest.fixture
def model():
    return _model_with_spectra(0.7 ** torch.arange(32.0), torch.ones(32))


@pytest.mark.parametrize("factor", [1.5, 2.0, 4.0, 8.0])
def test_both_rules_meet_the_budget(model, factor):
    x = torch.randn(1, 32)
    budget = int(svdtrain.count_macs(model, x) / factor)
    ranks = svdtrain.MacsBudget(x, max_macs=budget).ranks(model)
    assert set(ranks) == {"0.weight", "1.weight"} and all(1 <= r <= 32 for r in ranks.values())
    assert svdtrain.count_macs(_pruned(model, ranks), x) <= budget
    uniform = _copy(model)
    svdtrain.prune(uniform, svdtrain.MacsBudget(x, max_macs=budget, allocation="energy"))
    assert svdtrain.count_macs(uniform, x) <= budget
    assert svdtrain.count_macs(svdtrain.compact(uniform, x), x) <= budget


def _copy(model):
    return copy.deepcopy(model)


def _pruned(model, ranks):
    pruned = _copy(model)
    svdtrain.prune(pruned, svdtrain.Ranks(ranks))
    return pruned


def test_greedy_cuts_where_energy_is_cheap(model):
    """A decaying spectrum loses little per dropped value; a flat one a lot: greedy cuts the first."""
    x = torch.randn(1, 32)
    ranks = svdtrain.MacsBudget(x, max_macs=svdtrain.count_macs(model, x) // 2).ranks(model)
    assert ranks["0.weight"] < 6 < ranks["1.weight"]


def test_greedy_loses_no_more_relative_energy_than_one_threshold(model):
    x = torch.randn(1, 32)
    budget = svdtrain.count_macs(model, x) // 2

    def lost(pruned):
        pairs = zip(_handles(pruned), _handles(model))
        return sum(1 - float(p.s.detach().pow(2).sum() / o.s.detach().pow(2).sum()) for p, o in pairs)

    uniform = _copy(model)
    svdtrain.prune(uniform, svdtrain.MacsBudget(x, max_macs=budget, allocation="energy"))
    assert lost(_pruned(model, svdtrain.MacsBudget(x, max_macs=budget).ranks(model))) <= lost(uniform) + 1e-9


def test_layers_left_dense_keep_every_value(model):
    """Above the break-even rank a layer stays dense: dropping values there saves nothing."""
    x = torch.randn(1, 32)
    ranks = svdtrain.MacsBudget(x, max_macs=svdtrain.count_macs(model, x) * 3 // 4).ranks(model)
    assert ranks["1.weight"] == 32  # the flat layer is never worth cutting below break-even (16)


def test_unreachable_budget_is_a_clear_error(model):
    x = torch.randn(1, 32)
    with pytest.raises(ValueError, match="out of reach"):
        svdtrain.MacsBudget(x, max_macs=10).ranks(model)
    with pytest.raises(ValueError, match="out of reach"):
        svdtrain.MacsBudget(x, max_macs=10, allocation="energy").ranks(model)


def test_budget_already_met_changes_nothing(model):
    x = torch.randn(1, 32)
    total = svdtrain.count_macs(model, x)
    assert svdtrain.MacsBudget(x, max_macs=total).ranks(model) == {"0.weight": 32, "1.weight": 32}
    assert energy_for_macs(model, x, total, spectra(model)) == 0.0


@pytest.mark.parametrize("multiple", [4, 8])
@pytest.mark.parametrize("factor", [1.5, 2.0])
def test_rank_multiple_keeps_pruned_ranks_on_the_grid(model, factor, multiple):
    x = torch.randn(1, 32)
    budget = int(svdtrain.count_macs(model, x) / factor)
    ranks = svdtrain.MacsBudget(x, max_macs=budget, multiple=multiple).ranks(model)
    assert all(r == 32 or r % multiple == 0 for r in ranks.values()), ranks
    assert svdtrain.count_macs(_pruned(model, ranks), x) <= budget


def test_rank_multiple_floor_is_one_block():
    model = _model_with_spectra(0.7 ** torch.arange(32.0), torch.ones(32))
    x = torch.randn(1, 32)  # rank 8 in both layers costs 2 * 8 * 64 MACs
    with pytest.raises(ValueError, match=r"out of reach: even rank 8 \(multiple=8\)"):
        svdtrain.MacsBudget(x, max_macs=1000, multiple=8).ranks(model)
    assert svdtrain.MacsBudget(x, max_macs=1024, multiple=8).ranks(model) == {"0.weight": 8, "1.weight": 8}


def test_rank_multiple_of_one_is_the_plain_greedy_rule(model):
    x = torch.randn(1, 32)
    budget = int(svdtrain.count_macs(model, x) / 2)
    plain = svdtrain.MacsBudget(x, max_macs=budget).ranks(model)
    assert svdtrain.MacsBudget(x, max_macs=budget, multiple=1).ranks(model) == plain


def test_rank_multiple_drops_whole_blocks_of_the_smallest_values():
    # 30 values (dense: 900 MACs); the grid for multiple 8 is 30 -> 24 -> 16 -> 8
    model = svdtrain.decompose(nn.Sequential(nn.Linear(30, 30)))
    (handle,) = _handles(model)
    with torch.no_grad():
        handle.s.copy_(torch.linspace(1, 2, 30))
    x = torch.randn(1, 30)
    rank_cost = kind_for(model[0]).pair_macs(model[0], "weight", x.shape, 1)
    assert rank_cost == 60  # MACs per kept value
    assert svdtrain.MacsBudget(x, max_macs=int(rank_cost * 12), multiple=8).ranks(model) == {"0.weight": 8}
    assert svdtrain.MacsBudget(x, max_macs=int(rank_cost * 12)).ranks(model) == {"0.weight": 12}


@pytest.mark.parametrize("multiple", [0, -8, 2.0, True])
def test_bad_rank_multiple_is_refused(model, multiple):
    with pytest.raises(ValueError, match="multiple"):
        svdtrain.MacsBudget(torch.randn(1, 32), max_macs=100, multiple=multiple)


class ReadsItsWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(32, 32), nn.Linear(32, 32)

    def forward(self, x):
        return self.b(self.a(x).to(self.b.weight.dtype))  # b's weight is read outside b's forward


@pytest.mark.parametrize("dense_kind", ["same_reflect", "read_outside", "subclass"])
def test_weights_that_always_deploy_dense_keep_every_value(dense_kind):
    """Dropping values of a weight that deploys dense whatever its rank buys no MACs."""
    if dense_kind == "same_reflect":
        model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding="same", padding_mode="reflect"))
        x = torch.randn(1, 8, 6, 6)
    elif dense_kind == "read_outside":
        model, x = ReadsItsWeight(), torch.randn(2, 32)
    else:
        model = nn.Sequential(nn.Linear(32, 32), nn.modules.linear.NonDynamicallyQuantizableLinear(32, 32))
        x = torch.randn(2, 32)
    svdtrain.decompose(model)
    first, second = svdtrain.factored_weights(model)
    total = svdtrain.count_macs(model, x)
    ranks = svdtrain.MacsBudget(x, max_macs=total * 3 // 4).ranks(model)
    assert ranks[second] == 8 if dense_kind == "same_reflect" else ranks[second] == 32
    assert ranks[first] < 8 if dense_kind == "same_reflect" else ranks[first] < 32
    assert svdtrain.count_macs(_pruned(model, ranks), x) <= total * 3 // 4
    with pytest.raises(ValueError, match="out of reach"):
        svdtrain.MacsBudget(x, max_macs=total // 2 - 1).ranks(model)  # the dense weight alone costs half


def test_budget_of_a_bare_layer_and_a_conv():
    conv = svdtrain.decompose(nn.Conv2d(8, 16, 3, padding=1))
    x = torch.randn(1, 8, 6, 6)
    budget = svdtrain.count_macs(conv, x) // 3
    ranks = svdtrain.MacsBudget(x, max_macs=budget).ranks(conv)
    assert set(ranks) == {"weight"} and svdtrain.count_macs(_pruned(conv, ranks), x) <= budget
    energy = energy_for_macs(conv, x, budget, spectra(conv))
    assert 0 < energy < 1
    assert svdtrain.count_macs(_pruned_energy(conv, energy), x) <= budget
    assert svdtrain.count_macs(_pruned_energy(conv, max(0.0, energy - 1e-3)), x) > budget  # the smallest such


def _pruned_energy(model, energy):
    pruned = _copy(model)
    svdtrain.prune(pruned, svdtrain.Energy(energy))
    return pruned


def test_budget_rules_leave_the_model_unchanged(model):
    x = torch.randn(1, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    budget = svdtrain.count_macs(model, x) // 2
    svdtrain.MacsBudget(x, max_macs=budget).ranks(model)
    svdtrain.MacsBudget(x, max_macs=budget, allocation="energy").ranks(model)
    assert before.keys() == model.state_dict().keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_budget_rules_need_factored_weights():
    for allocation in ("greedy", "energy"):
        policy = svdtrain.MacsBudget(torch.randn(1, 3), max_macs=5, allocation=allocation)
        with pytest.raises(ValueError, match=r"no factored weights; call svdtrain\.decompose"):
            policy.ranks(nn.Sequential(nn.Linear(3, 3)))


def test_a_module_called_twice_saves_on_every_call():
    fc = nn.Linear(32, 32)
    model = svdtrain.decompose(nn.Sequential(fc, nn.Tanh(), fc))
    x = torch.randn(1, 32)
    assert svdtrain.count_macs(model, x) == 2 * 32 * 32
    ranks = svdtrain.MacsBudget(x, max_macs=2 * 64 * 4).ranks(model)  # rank 4 costs 64 per value and call
    assert ranks == {"0.weight": 4}
    assert svdtrain.count_macs(_pruned(model, ranks), x) == 2 * 64 * 4
    with pytest.raises(ValueError, match="even rank 1 per layer costs 128"):
        svdtrain.MacsBudget(x, max_macs=127).ranks(model)
