"""Rank policies on small models: what each decides, the model left unchanged, and prune applying it."""

import copy

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain import Energy, MacsBudget, Ranks, Speedup, Threshold
from svdtrain.surgery import latency, timing
from svdtrain.surgery.allocate import Costs, RankCosts, greedy_ranks


def _two(decaying: torch.Tensor, flat: torch.Tensor) -> nn.Module:
    """Two 32x32 linear layers with these singular values (ranks depend on nothing else)."""
    model = svdtrain.decompose(nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32)))
    for handle, s in zip(svdtrain.factored_weights(model).values(), (decaying, flat)):
        with torch.no_grad():
            handle.s.copy_(s)
    return model


@pytest.fixture
def model():
    return _two(0.7 ** torch.arange(32.0), torch.ones(32))


def _cnn(seed: int) -> tuple[nn.Module, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    model = svdtrain.decompose(nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 24, 1),
        nn.Flatten(), nn.Linear(24 * 8 * 8, 40), nn.Linear(40, 10),
    ))  # fmt: skip
    for handle in svdtrain.factored_weights(model).values():
        with torch.no_grad():
            handle.s.copy_(torch.rand(handle.s.shape, generator=generator) ** 3 * 2)
    return model, torch.randn(2, 3, 8, 8, generator=generator)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_energy_threshold_and_ranks_on_known_spectra(model):
    assert Energy(0.0).ranks(model) == {"0.weight": 32, "1.weight": 32}  # 0 keeps every value
    assert Energy(0.5).ranks(model) == {"0.weight": 1, "1.weight": 16}  # 0.49 of the decaying energy is past s_0
    assert Threshold(0.5).ranks(model) == {"0.weight": 2, "1.weight": 32}  # 0.7 >= 0.5 > 0.49
    assert Ranks(3).ranks(model) == {"0.weight": 3, "1.weight": 3}
    assert Ranks({"1.weight": 2}).ranks(model) == {"1.weight": 2}


def test_policies_leave_the_model_unchanged_and_prune_applies_them(model):
    x = torch.randn(1, 32)
    before = _state(model)
    policies = [Energy(0.1), Threshold(0.5), Ranks(4), MacsBudget(x, reduction=2.0), MacsBudget(x, max_macs=1024,
                allocation="energy")]  # fmt: skip
    decided = [policy.ranks(model) for policy in policies]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for policy, ranks in zip(policies, decided):
        assert svdtrain.prune(copy.deepcopy(model), policy) == {**{"0.weight": 32, "1.weight": 32}, **ranks}


@pytest.mark.parametrize(
    "factor, multiple, expected",  # ranks_for_macs's answers before the one allocator replaced it
    [(1.5, 1, {"0.weight": 5, "1.weight": 32}), (2.0, 1, {"0.weight": 4, "1.weight": 12}),
     (8.0, 1, {"0.weight": 3, "1.weight": 1}), (2.0, 8, {"0.weight": 8, "1.weight": 8}),
     (3.0, 4, {"0.weight": 4, "1.weight": 4})],
)  # fmt: skip
def test_greedy_macs_budget_keeps_the_old_greedy_choices(model, factor, multiple, expected):
    x = torch.randn(1, 32)
    budget = int(svdtrain.count_macs(model, x) / factor)
    assert MacsBudget(x, max_macs=budget, multiple=multiple).ranks(model) == expected


@pytest.mark.parametrize(
    "seed, factor, multiple, expected",
    [(0, 2.5, 1, {"0.weight": 7, "2.weight": 6, "4.weight": 9, "6.weight": 17, "7.weight": 6}),
     (1, 1.7, 8, {"0.weight": 16, "2.weight": 8, "4.weight": 24, "6.weight": 24, "7.weight": 10}),
     (3, 4.0, 1, {"0.weight": 5, "2.weight": 3, "4.weight": 7, "6.weight": 11, "7.weight": 7})],
)  # fmt: skip
def test_greedy_macs_budget_keeps_the_old_choices_on_a_cnn(seed, factor, multiple, expected):
    model, x = _cnn(seed)
    budget = int(svdtrain.count_macs(model, x) / factor)
    policy = MacsBudget(x, max_macs=budget, multiple=multiple)
    assert policy.ranks(model) == expected
    svdtrain.prune(model, policy)
    assert svdtrain.count_macs(model, x) <= budget


def test_a_reduction_is_of_the_model_as_it_would_deploy_now(model):
    x = torch.randn(1, 32)
    total = svdtrain.count_macs(model, x)
    assert MacsBudget(x, reduction=2.0).ranks(model) == MacsBudget(x, max_macs=total // 2).ranks(model)


def test_out_of_reach_targets_name_the_target(model):
    x = torch.randn(1, 32)
    with pytest.raises(ValueError, match=r"a budget of 10 MACs is out of reach: even rank 1 per layer costs 128"):
        MacsBudget(x, max_macs=10).ranks(model)
    with pytest.raises(ValueError, match=r"a budget of 10 MACs is out of reach"):
        MacsBudget(x, max_macs=10, allocation="energy").ranks(model)
    with pytest.raises(ValueError, match=r"a budget of 100 MACs is out of reach: even rank 8 \(multiple=8\)"):
        MacsBudget(x, max_macs=100, multiple=8).ranks(model)


@pytest.mark.parametrize(
    "kwargs, match",
    [({}, "one of max_macs= and reduction="), ({"max_macs": 5, "reduction": 2.0}, "one of max_macs="),
     ({"reduction": 1.0}, "reduction must be > 1"), ({"max_macs": 0}, "max_macs must be an integer"),
     ({"max_macs": 5, "allocation": "uniform"}, "allocation must be"),
     ({"max_macs": 5, "multiple": 0}, "multiple must be"),
     ({"max_macs": 5, "allocation": "energy", "multiple": 8}, "allocation='greedy' only")],
)  # fmt: skip
def test_bad_macs_budgets_are_refused_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MacsBudget(torch.randn(1, 32), **kwargs)


def test_bad_rules_are_refused_when_built():
    with pytest.raises(ValueError, match="energy must be"):
        Energy(1.0)
    with pytest.raises(ValueError, match="threshold must be"):
        Threshold(-1.0)
    with pytest.raises(ValueError, match="speedup must be > 1"):
        Speedup(1.0, torch.randn(1, 4))
    with pytest.raises(ValueError, match="points must be"):
        Speedup(2.0, torch.randn(1, 4), points=0)


def test_threshold_refuses_a_calibration(model):
    calibration = svdtrain.calibrate(model, [torch.randn(8, 32)])
    with pytest.raises(ValueError, match="with a calibration give Energy or Ranks"):
        Threshold(0.1).ranks(model, calibration)


def test_a_model_without_factored_weights_is_refused():
    plain, x = nn.Sequential(nn.Linear(3, 3)), torch.randn(1, 3)
    for policy in (Energy(0.1), Threshold(0.1), Ranks(1), MacsBudget(x, max_macs=5), Speedup(2.0, x)):
        with pytest.raises(ValueError, match=r"no factored weights; call svdtrain\.decompose"):
            svdtrain.prune(plain, policy)


def test_a_custom_policy_with_its_own_cost_table_plugs_in(model):
    """Any object with ranks() is a policy; the allocator takes any cost table."""

    class DearSecondLayer:
        def ranks(self, model, calibration=None):
            per_rank = {"0.weight": 1.0, "1.weight": 1000.0}
            costs = Costs({name: RankCosts({r: per_rank[name] * r for r in range(1, 33)}) for name in per_rank})
            return greedy_ranks(costs, svdtrain.singular_values(model), {"0.weight": 32, "1.weight": 32}, 8014)

    # Each flat value holds 1/32 of its weight's energy but saves 1000 here: 3.1e-5 per unit, less than
    # the decaying weight's values down to s_14 (0.51 * 0.49^14 = 2.4e-5 per unit) and no more: those
    # 18 go first, then 24 flat ones meet 32 + 32000 - 18 - 24000 = 8014.
    assert svdtrain.prune(model, DearSecondLayer()) == {"0.weight": 14, "1.weight": 8}


@pytest.fixture
def synthetic_clock(monkeypatch):
    """Time = weights touched (+ 50 for the rest); a pair pays a 30-unit launch cost."""

    def fake(modules, inputs, rounds=5, warmup=2, compiled=False):
        def weights(m):
            return float(sum(p.numel() for n, p in m.named_parameters() if n.endswith("weight")))

        def pair(m):
            return isinstance(m, nn.Sequential) and len(m) == 2 and all(isinstance(x, nn.Linear) for x in m)

        return [weights(m) + 30 if pair(m) else weights(m) if isinstance(m, nn.Linear) else
                50 + sum(weights(x) for x in m.modules() if isinstance(x, nn.Linear)) for m in modules]  # fmt: skip

    monkeypatch.setattr(latency, "median_seconds", fake)
    monkeypatch.setattr(timing, "median_seconds", fake)


def test_speedup_on_a_synthetic_clock_and_out_of_reach(synthetic_clock):
    model = svdtrain.decompose(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)))
    with torch.no_grad():
        svdtrain.factored_weights(model)["0.weight"].s.copy_(0.8 ** torch.arange(64.0))
        svdtrain.factored_weights(model)["2.weight"].s.copy_(torch.ones(64))
    x = torch.randn(1, 64)
    # 50 + 2 * 4096 = 8242 -> 5494 for 1.5x: layer 0 must fall to 5494 - 50 - 4096 = 1348 = 128 r + 30
    assert Speedup(1.5, x).ranks(model) == {"0.weight": 8, "2.weight": 64}
    assert Speedup(1.5, x, device="cpu").ranks(model) == {"0.weight": 8, "2.weight": 64}
    with pytest.raises(ValueError, match=r"a 20x speedup is out of reach here: even the fastest ranks measure"):
        Speedup(20.0, x).ranks(model)
