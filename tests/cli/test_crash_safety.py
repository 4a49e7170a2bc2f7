"""Crash safety: damaged checkpoints and stage files, and SIGKILL at random moments, all
resume to the result of an uninterrupted run."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from svdtrain.cli import main
from svdtrain.pipeline import trainer as trainer_module
from svdtrain.pipeline.run_folder import RunFolder
from svdtrain.train.checkpoint import save_checkpoint

TINY = ["--preset", "smoke", "--start-epochs", "1", "--svd-epochs", "3", "--finetune-epochs", "1",
        "--train-limit", "320", "--test-limit", "200", "--lr-milestones", "1"]


def _run(out, *extra):
    return main(["run", "--out", str(out), *TINY, *extra])


def _die_at_call(monkeypatch, n):
    """The n-th training epoch of the run raises KeyboardInterrupt; returns a function that undoes it."""
    real, calls = trainer_module.train_epoch, {"n": 0}

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_epoch", dies)
    return lambda: monkeypatch.setattr(trainer_module, "train_epoch", real)


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_epoch_checkpoint_falls_back_to_the_one_before(tmp_path, monkeypatch, capsys,
                                                                 assert_same_final_model):  # fmt: skip
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    restore = _die_at_call(monkeypatch, 4)  # start 1, svd_train 1 and 2 saved, dies in svd_train 3
    assert _run(interrupted) == 130
    assert (interrupted / "svd_train.ckpt.prev.pt").exists()
    _flip_a_byte(interrupted / "svd_train.ckpt.pt")
    restore()
    assert _run(interrupted, "--resume") == 0
    out = capsys.readouterr().out
    assert "svd_train.ckpt.pt is corrupted" in out and "resuming from svd_train.ckpt.prev.pt" in out
    assert _run(reference) == 0
    assert_same_final_model(reference, interrupted)


def test_a_truncated_stage_file_is_redone_from_its_input(tmp_path, monkeypatch, capsys, assert_same_final_model):
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    restore = _die_at_call(monkeypatch, 5)  # start 1, svd_train 3, dies in finetune 1: prune.pt is written
    assert _run(interrupted) == 130
    path = interrupted / "prune.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    restore()
    assert _run(interrupted, "--resume") == 0
    assert "prune.pt is corrupted" in capsys.readouterr().out
    assert _run(reference) == 0
    assert_same_final_model(reference, interrupted)


# Runs the command line in a child that SIGKILLs itself in the middle of its N-th atomic write
# (the file written, not yet renamed into place): a crash during a checkpoint write.
DIE_IN_WRITE = """
import os, signal, sys
import svdtrain.io as io
real, count, n = io.atomic_write, [0], int(sys.argv[1])
def dying(path, write, mode="w"):
    count[0] += 1
    if count[0] != n:
        return real(path, write, mode)
    def half(f):
        write(f)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, half, mode)
io.atomic_write = dying
from svdtrain.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _state(folder):
    """The run folder's files and their modification times (a file may vanish meanwhile)."""
    state = {}
    for path in RunFolder(folder).written_files():
        try:
            state[path] = path.stat().st_mtime_ns
        except FileNotFoundError:
            pass
    return state


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_to_the_same_report(tmp_path, assert_same_final_model):
    args = ["run", *TINY]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run([sys.executable, "-m", "svdtrain", *args, "--out", str(reference)], check=True, capture_output=True)
    # Killed while writing its 4th file (an epoch checkpoint or its checksum), then at random moments.
    during_write = subprocess.run([sys.executable, "-c", DIE_IN_WRITE, "4", *args, "--out", str(killed)],
                                  capture_output=True)  # fmt: skip
    assert during_write.returncode == -signal.SIGKILL
    assert list(killed.rglob(".*.tmp"))  # the half-written file never took a final name
    delays, kills = random.Random(0), 1
    for _ in range(4):  # each time: once the run has written something new, a random moment later
        before = _state(killed)
        process = subprocess.Popen([sys.executable, "-m", "svdtrain", *args, "--out", str(killed), "--resume"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        while process.poll() is None and _state(killed) == before:
            time.sleep(0.02)
        time.sleep(delays.uniform(0.0, 0.5))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
        if (killed / "report.json").exists():
            json.loads((killed / "report.json").read_text())  # whole whenever it is there
    assert kills >= 3
    subprocess.run([sys.executable, "-m", "svdtrain", *args, "--out", str(killed), "--resume"], check=True,
                   capture_output=True)  # fmt: skip
    assert_same_final_model(reference, killed)
    a, b = (json.loads((run / "report.json").read_text()) for run in (reference, killed))
    assert a["compact"] == b["compact"] and a["layers"] == b["layers"]


def _quick(finetune_epochs=1):
    return ["--preset", "smoke", "--start-epochs", "1", "--svd-epochs", "1", "--finetune-epochs", str(finetune_epochs),
            "--train-limit", "320", "--test-limit", "200"]  # fmt: skip


QUICK = _quick()


@pytest.fixture(scope="module")
def finished_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", "--out", str(out), *QUICK]) == 0
    return out


def _resume(out, capsys):
    capsys.readouterr()
    assert main(["run", "--out", str(out), *QUICK, "--resume"]) == 0
    return capsys.readouterr().out


def test_a_stage_redone_redoes_the_stages_after_it(finished_quick, tmp_path, capsys):
    one = tmp_path / "one"  # issue 32's case: the export stage's file outlived its outputs and its input
    shutil.copytree(finished_quick, one)
    for name in ("report.json", "finetune.pt"):
        (one / name).unlink()
    shutil.rmtree(one / "export")
    (one / "prune.pt").write_bytes((one / "prune.pt").read_bytes()[:200])
    out = _resume(one, capsys)
    assert "prune.pt is corrupted" in out and "start: already done, skipped\nsvd_train: already done, skipped" in out
    assert "export: done before, but a stage before it ran again; it runs again" in out
    assert (one / "export" / "spec.json").is_file() and (one / "report.json").is_file()


def test_a_stage_made_from_a_stage_file_since_redone_runs_again(finished_quick, tmp_path, monkeypatch, capsys):
    one = tmp_path / "one"
    shutil.copytree(finished_quick, one)
    (one / "report.json").unlink()
    (one / "prune.pt").write_bytes((one / "prune.pt").read_bytes()[:200])
    restore = _die_at_call(monkeypatch, 1)  # prune is redone, then the run stops in finetune's first epoch
    assert main(["run", "--out", str(one), *QUICK, "--resume"]) == 130
    restore()
    out = _resume(one, capsys)  # prune.pt is good now: finetune.pt, from the one before, is not
    assert "prune: already done, skipped\nfinetune: done before, but its input prune.pt changed since it ran" in out
    assert "export: done before, but a stage before it ran again" in out and (one / "report.json").is_file()


def test_stage_files_without_a_recorded_input_resume_as_before(finished_quick, tmp_path, capsys):
    one = tmp_path / "one"
    shutil.copytree(finished_quick, one)
    for stage in ("start", "svd_train", "prune", "finetune", "export"):  # as an older svdtrain wrote them
        payload = torch.load(one / f"{stage}.pt", weights_only=True)
        assert payload.pop("input", None) is not None or stage == "start"
        save_checkpoint(one / f"{stage}.pt", payload)
    (one / "report.json").unlink()
    out = _resume(one, capsys)
    assert all(f"{stage}: already done, skipped" in out for stage in ("start", "svd_train", "prune", "finetune",
                                                                         "export"))  # fmt: skip
    assert (one / "report.json").is_file()


def test_a_stage_redone_drops_the_epoch_checkpoints_of_those_after_it(tmp_path, monkeypatch, capsys):
    out, flags = tmp_path / "one", _quick(finetune_epochs=2)
    restore = _die_at_call(monkeypatch, 4)  # start 1, svd_train 1, finetune 1 saved, dies in finetune 2
    assert main(["run", "--out", str(out), *flags]) == 130
    assert (out / "finetune.ckpt.pt").exists()
    restore()
    (out / "prune.pt").write_bytes((out / "prune.pt").read_bytes()[:200])
    capsys.readouterr()
    assert main(["run", "--out", str(out), *flags, "--resume"]) == 0
    log = capsys.readouterr().out
    assert "prune.pt is corrupted" in log and "finetune 1/2" in log and "resuming" not in log


def test_an_epoch_checkpoint_without_the_engine_state_resumes_its_gradual_cuts(tmp_path, monkeypatch,
                                                                              assert_same_final_model):  # fmt: skip
    """Epoch checkpoints written before they held SVDTraining's state: the cuts made are counted
    from the epochs done, so the run continues to the uninterrupted run's model."""
    gradual = ("--target-reduction", "2", "--gradual", "true")
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    restore = _die_at_call(monkeypatch, 4)  # start 1, svd_train 1 and 2 (two cuts) saved, dies in svd_train 3
    assert _run(interrupted, *gradual) == 130
    ckpt = interrupted / "svd_train.ckpt.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state.pop("svd")["cuts"] == 2
    save_checkpoint(ckpt, state)  # as an earlier svdtrain wrote it
    restore()
    assert _run(interrupted, *gradual, "--resume") == 0
    assert _run(reference, *gradual) == 0
    assert_same_final_model(interrupted, reference)
