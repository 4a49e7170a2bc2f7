"""memory_plan: the bytes of training a model dense and in SVD form, from shapes alone."""

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain.train.memory_plan import memory_plan


def _model() -> nn.Module:
    return nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 48),
                         nn.Conv1d(48, 8, 3))  # fmt: skip


def test_the_plan_on_the_meta_device_counts_what_decompose_and_a_lean_start_build():
    torch.manual_seed(0)
    with torch.device("meta"):
        planned = {row.form: row for row in memory_plan(_model())}
    dense, full, lean = planned["dense"], planned["svd, full rank"], planned["svd, lean start 1"]
    real = _model()
    assert dense.params == sum(p.numel() for p in real.parameters())
    svdtrain.decompose(real)
    assert full.params == sum(p.numel() for p in real.parameters())
    svdtrain.prune(real, svdtrain.ParamsBudget(1.0))
    built = sum(p.numel() for p in real.parameters())
    assert built <= lean.params == dense.params and built >= 0.95 * lean.params  # the budget bounds what is built
    assert full.param_bytes == 4 * full.params == full.grad_bytes and full.optimizer_bytes == 8 * full.params
    assert full.per_process(4, sharded=True) == -(-full.total_bytes // 4) and full.per_process(4, False) == full.total_bytes


def test_the_optimizer_and_the_dtype_set_the_state_bytes():
    with torch.device("meta"):
        model = _model().to(torch.bfloat16)
    row = memory_plan(model, optimizer_states=1, state_bytes=2)[0]
    assert row.param_bytes == 2 * row.params and row.optimizer_bytes == 2 * row.params
    assert memory_plan(model, lean_start=0.5)[2].params < row.params
    with pytest.raises(ValueError):
        memory_plan(model, scheme="diagonal")
