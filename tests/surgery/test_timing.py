"""Timing where and as the model will be deployed: the device, the dtype, a synchronized GPU."""

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain.surgery import latency, timing
from svdtrain.surgery.timing import deployed_as, interleaved_medians


def _model():
    torch.manual_seed(0)
    return svdtrain.decompose(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)), init="svd")


def test_deployed_as_casts_a_copy_and_floating_inputs_only():
    model = _model()
    ids = torch.arange(4)
    timed, (x, kept) = deployed_as(model, (torch.randn(2, 64), ids), dtype=torch.bfloat16)
    assert timed is not model and next(timed.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # the model itself is not changed
    assert x.dtype == torch.bfloat16 and kept.dtype == torch.long
    same, inputs = deployed_as(model, ids)
    assert same is model and inputs is ids  # nothing asked: nothing copied


def test_each_timed_call_is_synchronized_before_and_after():
    events = []
    interleaved_medians([lambda: events.append("call")], rounds=2, warmup=1, sync=lambda: events.append("sync"))
    assert events == ["sync", "call", "sync"] * 3


def test_a_speed_target_and_the_measured_forms_time_in_the_dtype_asked_for(monkeypatch):
    seen = []
    real = timing.median_seconds

    def recording(candidates, inputs, *args, **kwargs):
        first = inputs if torch.is_tensor(inputs) else inputs[0]
        seen.append((next(candidates[0].parameters()).dtype, first.dtype))
        return real(candidates, inputs, *args, **kwargs)

    monkeypatch.setattr(timing, "median_seconds", recording)
    monkeypatch.setattr(latency, "median_seconds", recording)
    model, x = _model(), torch.randn(16, 64)
    svdtrain.prune(model, svdtrain.Ranks(8))  # pairs cheaper in MACs: compact times them
    svdtrain.compact(model, x, choose="measured", dtype=torch.bfloat16, rounds=1)
    assert seen and all(dtypes == (torch.bfloat16, torch.bfloat16) for dtypes in seen)
    seen.clear()
    policy = svdtrain.Speedup(1.01, x, dtype=torch.bfloat16, rounds=1, points=2)
    try:
        policy.ranks(model)
    except ValueError as error:  # out of reach is a fair answer for layers this small
        assert "out of reach" in str(error)
    assert seen and all(dtypes == (torch.bfloat16, torch.bfloat16) for dtypes in seen)
    assert next(model.parameters()).dtype == torch.float32


def test_compiled_timing_compiles_every_candidate_past_dynamos_recompile_limit():
    """Dynamo recompiles a Linear's forward per shape and, past 8, silently runs it eager: a
    compiled timing of more forms than that would compare eager against compiled."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    graphs = counters["stats"]["unique_graphs"]
    shapes = [(8 + i, 8) for i in range(10)]
    for columns, rows in shapes:
        (seconds,) = timing.median_seconds([nn.Linear(columns, rows)], torch.randn(2, columns), rounds=1, warmup=0,
                                           compiled=True)  # fmt: skip
        assert seconds > 0
    assert counters["stats"]["unique_graphs"] - graphs == len(shapes)
    assert torch._dynamo.config.recompile_limit == 8  # lifted while timing only


def test_compiled_is_passed_to_every_timing_of_a_speed_target_and_the_measured_forms(monkeypatch):
    seen = []

    def recording(candidates, inputs, rounds=9, warmup=2, compiled=False):
        seen.append(compiled)
        return [1.0] * len(candidates)

    monkeypatch.setattr(timing, "median_seconds", recording)
    monkeypatch.setattr(latency, "median_seconds", recording)
    model, x = _model(), torch.randn(16, 64)
    svdtrain.prune(model, svdtrain.Ranks(8))
    svdtrain.compact(model, x, choose="measured", rounds=1, compiled=True)
    with pytest.raises(ValueError, match="out of reach"):  # a clock on which nothing is faster
        svdtrain.Speedup(1.5, x, rounds=1, points=2, compiled=True).ranks(model)
    assert len(seen) > 3 and all(seen)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_gpu_timing_synchronizes_on_the_inputs_device():
    x = torch.randn(8, 64, device="cuda")
    assert timing._synchronizer(x) is not None
    (seconds,) = timing.median_seconds([nn.Linear(64, 64).cuda()], x, rounds=3)
    assert seconds > 0
