"""How a run executes: subnormal floats flushed to zero on CPU while it runs, unless told not to."""

import torch

from svdtrain.train.runtime import denormals_flushed


def _subnormal_survives() -> bool:
    return (torch.tensor([1e-39]) * 1.0).item() > 0.0  # below float32's smallest normal, 1.2e-38


def test_subnormals_are_flushed_within_the_block_and_as_before_after_it():
    assert _subnormal_survives()
    with denormals_flushed(True):
        assert not _subnormal_survives()
        with denormals_flushed(False):
            assert _subnormal_survives()
        assert not _subnormal_survives()
    assert _subnormal_survives()  # nothing leaks into the rest of the process


def test_a_stage_runs_flushed(tmp_path, monkeypatch):
    from svdtrain.pipeline.config import resolve_config
    from svdtrain.pipeline.experiment import Experiment

    seen = []
    monkeypatch.setattr(Experiment, "run_report", lambda self: seen.append(_subnormal_survives()))
    for flush in (True, False):
        Experiment(resolve_config("smoke", overrides={"flush_denormals": flush}), tmp_path).run_stage("report")
    assert seen == [False, True] and _subnormal_survives()
