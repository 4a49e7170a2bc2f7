"""torchrun: the smoke language-model preset on 2 CPU processes (gloo) against 1 process at the
same global batch: the same ranks, metrics and exported outputs, up to reduction order."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

from svdtrain.export import load_compact

torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=os.path.dirname(sys.executable))
TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 40
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.slow  # each starts two processes: ~18 s


def _svdtrain(*args, processes=1):
    launcher = [torchrun, "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    done = subprocess.run([*launcher, "-m", "svdtrain", *args], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(torchrun is None, reason="torchrun is not installed")
def test_two_processes_equal_one_at_the_same_global_batch(tmp_path):
    text = tmp_path / "text.txt"  # its own text: the test needs no shared data folder
    text.write_text(TEXT)
    args = ["--preset", "smoke-lm", "--data", str(text), "--export-onnx", "false"]
    one, two = tmp_path / "one", tmp_path / "two"
    _svdtrain("run", *args, "--out", str(one))
    _svdtrain("start", *args, "--out", str(two), processes=2)  # then resumed: a distributed run continues
    out = _svdtrain("run", *args, "--out", str(two), "--resume", processes=2)
    assert out.count("report written to") == 1  # rank 0 alone reports
    a, b = (json.loads((run / "report.json").read_text()) for run in (one, two))
    assert a["layers"] == b["layers"]
    for stage in ("start", "svd_train", "prune", "finetune"):
        assert b["stages"][stage]["loss"] == pytest.approx(a["stages"][stage]["loss"], rel=1e-4), stage
    assert b["compact"]["macs"] == a["compact"]["macs"]
    x = torch.randint(0, len(set(TEXT)), (3, 16))
    with torch.no_grad():  # logits of about +-3; 3 epochs of Adam carry the reduction-order differences to ~1e-3
        torch.testing.assert_close(load_compact(two / "export")(x), load_compact(one / "export")(x), atol=3e-3, rtol=1e-3)


@pytest.mark.skipif(torchrun is None, reason="torchrun is not installed")
def test_a_batchnorm_cnn_on_two_processes_equals_one(tmp_path):
    """BatchNorm normalizes over the global batch on CPU too (GlooSyncBatchNorm), so the CNN
    smoke preset's ranks, accuracies and exported outputs match one process. SGD: Adam turns
    reduction-order noise in near-zero gradients into whole steps (1e-2 apart after 3 epochs)."""
    args = ["--preset", "smoke", "--train-limit", "256", "--test-limit", "128", "--start-epochs", "1",
            "--svd-epochs", "1", "--finetune-epochs", "1", "--export-onnx", "false", "--optimizer", "sgd"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    _svdtrain("run", *args, "--out", str(one))
    _svdtrain("run", *args, "--out", str(two), processes=2)
    a, b = (json.loads((run / "report.json").read_text()) for run in (one, two))
    assert a["layers"] == b["layers"]
    for stage in ("start", "svd_train", "prune", "finetune"):
        assert b["stages"][stage]["accuracy"] == a["stages"][stage]["accuracy"], stage
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():  # measured 1e-5; with per-process statistics even the accuracies differ
        torch.testing.assert_close(load_compact(two / "export")(x), load_compact(one / "export")(x), atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(torchrun is None, reason="torchrun is not installed")
def test_a_missing_checkpoint_stops_every_process_with_its_one_line(tmp_path):
    """Every process checks the checkpoint before any barrier, so none waits for one that stopped.
    (Each fails on its own; torchrun ends the others once the first exits, so one or both lines
    reach stderr, never a hang.)"""
    small = ["--preset", "smoke", "--train-limit", "640", "--test-limit", "128", "--export-onnx", "false"]
    missing = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "svdtrain", "run", *small, "--init", "svd",
               "--start-epochs", "0", "--energy", "0", "--target-reduction", "1.5", "--checkpoint",
               str(tmp_path / "none.pt"), "--out", str(tmp_path / "bad")]  # fmt: skip
    started = time.monotonic()
    failed = subprocess.run(missing, env=ENV, capture_output=True, text=True, timeout=120)
    assert failed.returncode != 0 and "svdtrain run: error:" in failed.stderr and "none.pt" in failed.stderr
    assert time.monotonic() - started < 60  # no process waited for the one that stopped
    assert not (tmp_path / "bad" / "config.json").exists()


PLANT = '''
import os
from svdtrain.train.step import StepLoss

_real, _calls = StepLoss._eager, [0]


def _planted(self, batch, regularize):
    loss, outputs, task_loss = _real(self, batch, regularize)
    _calls[0] += 1
    if os.environ.get("RANK") == "1" and _calls[0] == 3:
        loss = loss * float("nan")
    return loss, outputs, task_loss


StepLoss._eager = _planted
'''


@pytest.mark.skipif(torchrun is None, reason="torchrun is not installed")
def test_a_nan_in_one_process_stops_both_at_its_step_and_neither_saves(tmp_path):
    """Rank 1's loss turns NaN at step 3. Both processes skip that update on the all-reduced
    gradients (no sync a step), agree at the next check on the first bad step, and stop with
    exit 3 before any checkpoint holds the model."""
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    (tmp_path / "plant").mkdir()
    (tmp_path / "plant" / "sitecustomize.py").write_text(PLANT)  # imported by each process at start-up
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path / "plant"), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "svdtrain", "run", "--preset",
                           "smoke-lm", "--data", str(text), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode != 0
    assert "start epoch 1: training diverged at step 3: the loss is not finite here" in done.stderr
    assert "start epoch 1: training diverged at step 3: the loss is not finite in another process" in done.stderr
    assert "every parameter is finite" in done.stderr  # the skipped update left both models finite
    assert not any(out.glob("start*.pt"))
