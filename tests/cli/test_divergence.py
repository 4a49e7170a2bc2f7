"""A run whose loss turns NaN stops at the next check, naming the step it turned, and no
checkpoint ever holds the diverged model (the loss is read every 50 steps, not every step)."""

import json

import pytest
import torch

from svdtrain.cli import main
from svdtrain.pipeline.run_folder import RunFolder
from svdtrain.train.step import StepLoss

TINY = ["--preset", "smoke", "--start-epochs", "2", "--svd-epochs", "1", "--finetune-epochs", "1",
        "--train-limit", "320", "--test-limit", "100"]  # 5 steps an epoch


def test_a_nan_planted_at_step_k_stops_the_run_before_any_checkpoint_holds_it(tmp_path, monkeypatch, capsys):
    real, calls = StepLoss._eager, {"n": 0}

    def planted(self, batch, regularize):
        loss, outputs, task_loss = real(self, batch, regularize)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 8 else loss), outputs, task_loss  # epoch 2, step 3

    monkeypatch.setattr(StepLoss, "_eager", planted)
    assert main(["run", "--out", str(tmp_path), *TINY]) == 3
    err = capsys.readouterr().err.strip()
    assert err == ("svdtrain run: error: start epoch 2: training diverged at step 3: the loss is not finite; every "
                   "parameter is finite (the inputs or the loss overflowed) (try a lower lr or grad_clip); "
                   "start.ckpt.pt keeps epoch 1")  # fmt: skip
    saved = torch.load(RunFolder(tmp_path).checkpoint("start"), weights_only=True)
    assert len(saved["history"]) == 1
    assert all(torch.isfinite(value).all() for value in saved["model"].values() if value.is_floating_point())
    assert not RunFolder(tmp_path).stage("start").exists()


def test_a_compile_mode_without_compile_is_one_line(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), *TINY, "--compile-mode", "reduce-overhead"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "svdtrain run: error: compile_mode 'reduce-overhead' takes effect only with compile: set it true"
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_compiled_pipeline_run_finishes_like_an_eager_one(tmp_path):
    """Every stage compiled (forward, loss, regularizers), recompiled after its cut; a minute on 2 cores."""
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    assert main(["run", "--out", str(eager), *TINY]) == 0
    assert main(["run", "--out", str(compiled), *TINY, "--compile", "true"]) == 0
    a, b = (json.loads((run / "report.json").read_text()) for run in (eager, compiled))
    assert b["config"]["optim"]["compile"] is True
    assert a["compact"]["macs"] == pytest.approx(b["compact"]["macs"], rel=0.2)
    assert abs(a["compact"]["accuracy"] - b["compact"]["accuracy"]) < 0.15
