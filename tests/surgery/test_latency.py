"""Speedup: ranks chosen by measured time, checked on a synthetic clock."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import svdtrain
from svdtrain.surgery import latency, timing
from svdtrain.surgery.allocate import monotone
from svdtrain.surgery.latency import rank_grid


def _module_macs(module: nn.Module) -> float:
    return float(sum(p.numel() for n, p in module.named_parameters() if n.endswith("weight")))


@pytest.fixture
def synthetic_clock(monkeypatch):
    """Time = weights touched (+ a fixed 50 for everything else); a pair pays a 30-unit launch cost."""

    def fake(modules, inputs, rounds=5, warmup=2, compiled=False):
        out = []
        for m in modules:
            if isinstance(m, nn.Sequential) and len(m) == 2 and all(isinstance(x, nn.Linear) for x in m):
                out.append(_module_macs(m) + 30)
            elif isinstance(m, nn.Linear):
                out.append(_module_macs(m))
            else:  # the whole model (at full rank: its dense layers) plus 50 for everything else
                out.append(50 + sum(_module_macs(x) for x in m.modules() if isinstance(x, nn.Linear)))
        return out

    monkeypatch.setattr(latency, "median_seconds", fake)
    monkeypatch.setattr(timing, "median_seconds", fake)


def _model():
    torch.manual_seed(0)
    model = svdtrain.decompose(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)))
    weights = svdtrain.factored_weights(model)
    with torch.no_grad():
        weights["0.weight"].s.copy_(0.8 ** torch.arange(64.0))  # decays: cheap to cut
        weights["2.weight"].s.copy_(torch.ones(64))  # flat: every value matters
    return model


def test_rank_grid():
    assert rank_grid(64, 8, 8) == [56, 48, 40, 32, 24, 16, 8]
    assert rank_grid(30, 8, 8) == [24, 16, 8]
    assert rank_grid(5, 1, 8) == [4, 3, 2, 1]
    grid = rank_grid(2048, 8, 6)
    assert len(grid) == 6 and grid[0] == 2040 and grid[-1] == 8 and all(r % 8 == 0 for r in grid)


def test_meets_the_speedup_on_the_clock_and_cuts_the_decaying_layer_first(synthetic_clock):
    model = _model()
    x = torch.randn(1, 64)
    total = 50 + 2 * 64 * 64
    ranks = svdtrain.Speedup(1.5, x).ranks(model)
    assert set(ranks) == {"0.weight", "2.weight"}
    assert ranks["0.weight"] < 64 and ranks["2.weight"] == 64  # the flat spectrum is left alone while possible
    cost = 50 + sum(64 * 64 if r == 64 else min(64 * 64, 2 * 64 * r + 30) for r in ranks.values())
    assert cost <= total / 1.5
    assert all(r == 64 or r % 8 == 0 for r in ranks.values())


def test_out_of_reach_and_bad_arguments_are_refused(synthetic_clock):
    model, x = _model(), torch.randn(1, 64)
    with pytest.raises(ValueError, match="out of reach"):
        svdtrain.Speedup(20.0, x).ranks(model)
    with pytest.raises(ValueError, match="speedup must be > 1"):
        svdtrain.Speedup(1.0, x).ranks(model)
    with pytest.raises(ValueError, match="multiple must be"):
        svdtrain.Speedup(1.5, x, multiple=0).ranks(model)
    with pytest.raises(ValueError, match=r"no factored weights; call svdtrain\.decompose"):
        svdtrain.Speedup(1.5, torch.randn(1, 4)).ranks(nn.Sequential(nn.Linear(4, 4)))


def test_the_model_is_not_changed(synthetic_clock):
    model, x = _model(), torch.randn(1, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    svdtrain.Speedup(1.5, x).ranks(model)
    assert before.keys() == model.state_dict().keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(parametrize.is_parametrized(model[i], "weight") for i in (0, 2))


def test_timed_forms_are_the_deployed_modules_of_one_weight(synthetic_clock, monkeypatch):
    seen = []

    def record(modules, inputs, rounds=5, warmup=2, compiled=False):
        seen.append([type(m) for m in modules])
        return [1.0] * len(modules)

    monkeypatch.setattr(latency, "median_seconds", record)
    model, x = _model(), torch.randn(1, 64)
    with pytest.raises(ValueError, match="out of reach"):  # a clock on which nothing is faster
        svdtrain.Speedup(1.5, x, points=2).ranks(model)
    whole, first, second = seen
    assert whole == [nn.Sequential]
    assert first == second == [nn.Linear, nn.Sequential, nn.Sequential]  # dense, then the pair at 2 ranks


def test_only_weights_that_can_be_timed_alone_get_ranks(synthetic_clock):
    class ReadsItsWeight(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 64)

        def forward(self, x):
            return self.b(self.a(x).to(self.b.weight.dtype))  # b is read outside its forward: stays dense

    model = svdtrain.decompose(ReadsItsWeight())
    with torch.no_grad():
        svdtrain.factored_weights(model)["a.weight"].s.copy_(0.8 ** torch.arange(64.0))
    ranks = svdtrain.Speedup(1.2, torch.randn(1, 64)).ranks(model)
    assert set(ranks) == {"a.weight"} and ranks["a.weight"] < 64


def test_noisy_times_are_made_monotone():
    assert monotone({64: 10.0, 48: 11.0, 32: 6.0, 16: 7.0}) == {64: 10.0, 48: 10.0, 32: 6.0, 16: 6.0}


def test_real_clock_returns_valid_ranks():
    model = svdtrain.decompose(nn.Sequential(nn.Conv2d(16, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3)))
    x = torch.randn(2, 16, 16, 16)
    try:
        ranks = svdtrain.Speedup(1.05, x, rounds=2).ranks(model)
    except ValueError as error:  # a machine where no pair is faster: the refusal must say so
        assert "out of reach" in str(error)
        return
    assert set(ranks) == {"0.weight", "2.weight"}
    assert all(1 <= ranks[name] <= handle.rank for name, handle in svdtrain.factored_weights(model).items())


def test_keyword_inputs_are_timed_like_tensors():
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 64)

        def forward(self, *, features):
            return self.fc(features)

    model = svdtrain.decompose(Keyword())
    try:  # timing decides whether the target is reachable; either answer means the input was run
        ranks = svdtrain.Speedup(1.05, {"features": torch.randn(256, 64)}, multiple=8, rounds=2).ranks(model)
    except ValueError as unreachable:
        assert "out of reach" in str(unreachable)
    else:
        assert set(ranks) == {"fc.weight"} and 1 <= ranks["fc.weight"] <= 64
