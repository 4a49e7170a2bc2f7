"""The rank multiple chosen by measurement: every candidate meets the same target, the fastest wins."""

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain.surgery import multiple as multiple_module


def _model():
    torch.manual_seed(0)
    return svdtrain.decompose(nn.Sequential(nn.Linear(32, 96), nn.ReLU(), nn.Linear(96, 32)), init="svd")


def test_each_candidate_meets_the_target_and_the_fastest_is_chosen(monkeypatch):
    model, x = _model(), torch.randn(4, 32)
    dense_macs = svdtrain.count_macs(model, x)
    met = []

    def timed(candidates, inputs, rounds, compiled=False):
        met.extend(svdtrain.count_macs(small, inputs) for small in candidates)
        return [0.001 * (10 - index) for index in range(len(candidates))]  # the last candidate "fastest"

    monkeypatch.setattr(multiple_module, "median_seconds", timed)
    best, seconds = svdtrain.fastest_multiple(model, x, lambda m: svdtrain.MacsBudget(x, reduction=2, multiple=m),
                                              candidates=(1, 8, 16, 64))  # fmt: skip
    assert 16 not in seconds and 64 not in seconds  # steps that wide cannot reach 2x on 32-wide weights: left out
    assert list(seconds) == [1, 8] and best == 8
    assert met and all(macs <= dense_macs / 2 for macs in met)
    assert all(w.rank == w.full_rank for w in svdtrain.factored_weights(model).values())  # not changed


def test_a_real_timing_picks_a_candidate_and_no_candidate_is_a_clear_error():
    model, x = _model(), torch.randn(4, 32)
    best, seconds = svdtrain.fastest_multiple(model, x, lambda m: svdtrain.MacsBudget(x, reduction=1.5, multiple=m),
                                              candidates=(1, 8), rounds=2)  # fmt: skip
    assert best in (1, 8) and all(s > 0 for s in seconds.values())
    with pytest.raises(ValueError, match="no rank multiple of 64 meets the policy"):
        svdtrain.fastest_multiple(model, x, lambda m: svdtrain.MacsBudget(x, reduction=2, multiple=m), candidates=(64,))


def test_compiled_candidates_are_timed_compiled(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **options: compiled.append(module) or module)
    model, x = _model(), torch.randn(4, 32)
    svdtrain.fastest_multiple(model, x, lambda m: svdtrain.MacsBudget(x, reduction=1.5, multiple=m),
                              candidates=(1, 8), rounds=1, compiled=True)  # fmt: skip
    assert len(compiled) == 2 and all(isinstance(module, nn.Module) for module in compiled)
