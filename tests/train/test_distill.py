"""Knowledge distillation: the loss by hand, its mixing weight, and its use in a run."""

import json
import math

import pytest
import torch
from torch import nn

from svdtrain.cli import main
from svdtrain.train import Distillation, distillation_loss


def test_distillation_loss_by_hand():
    student, teacher, T = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 2.0
    p = torch.softmax(teacher / T, 1)[0]
    q = torch.softmax(student / T, 1)[0]
    expected = T**2 * float((p * (p.log() - q.log())).sum())
    assert distillation_loss(student, teacher, T).item() == pytest.approx(expected, rel=1e-6)


def test_distillation_loss_is_zero_for_equal_logits_and_finite_for_extreme_ones():
    logits = torch.randn(4, 10)
    assert distillation_loss(logits, logits, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    huge = torch.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    loss = distillation_loss(huge, -huge.detach(), 1.0)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(huge.grad).all()


def test_mixing_weight_and_frozen_teacher():
    teacher = nn.Linear(3, 2)
    inputs, logits, task = torch.randn(5, 3), torch.randn(5, 2), torch.tensor(0.7)
    soft = distillation_loss(logits, teacher(inputs).detach(), 4.0)
    assert Distillation(teacher, weight=0.0).loss(inputs, logits, task).item() == pytest.approx(0.7)
    mixed = Distillation(teacher, weight=0.25).loss(inputs, logits, task)
    assert mixed.item() == pytest.approx(0.75 * 0.7 + 0.25 * soft.item(), rel=1e-5)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize(
    "kwargs, message", [({"weight": 1.5}, "distill_weight"), ({"temperature": 0.0}, "temperature")]
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Distillation(nn.Linear(2, 2), **kwargs)


@pytest.mark.parametrize("flag, value", [("--distill-weight", "1.5"), ("--distill-temperature", "-1")])
def test_bad_distillation_flags_are_one_line(tmp_path, capsys, flag, value):
    assert main(["run", "--out", str(tmp_path / "r"), "--preset", "smoke", flag, value]) == 2
    assert "distill" in capsys.readouterr().err


def test_run_with_distillation_changes_training(tmp_path):
    tiny = ["--preset", "smoke", "--start-epochs", "1", "--svd-epochs", "1", "--finetune-epochs", "1",
            "--train-limit", "256", "--test-limit", "128", "--export-onnx", "false"]
    losses = {}
    for weight in ("0", "0.9"):
        out = tmp_path / weight
        assert main(["run", "--out", str(out), *tiny, "--distill-weight", weight]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["config"]["finetune"]["distill_weight"] == float(weight)
        losses[weight] = (out / "metrics" / "finetune.csv").read_text().splitlines()[1]
    assert losses["0"] != losses["0.9"]  # the teacher's soft targets changed the updates
