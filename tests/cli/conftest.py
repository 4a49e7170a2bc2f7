"""Helpers shared by the pipeline tests."""

import pytest
import torch

from svdtrain.pipeline import trainer as trainer_module


@pytest.fixture
def die_in_third_epoch(monkeypatch):
    """While active, the third training epoch of a run (start 1, svd_train 1, then svd_train 2
    with --svd-epochs 2) raises KeyboardInterrupt; call the returned ``stop()`` to train normally."""
    real_train_epoch = trainer_module.train_epoch
    calls = {"n": 0}

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_epoch", dies)
    return lambda: monkeypatch.setattr(trainer_module, "train_epoch", real_train_epoch)


@pytest.fixture
def assert_same_final_model():
    """``check(reference_dir, resumed_dir)``: both runs ended with the same ranks and weights, bit for bit."""
    return _same_final_model


def _same_final_model(reference, resumed):
    a = torch.load(reference / "finetune.pt", weights_only=True)
    b = torch.load(resumed / "finetune.pt", weights_only=True)
    assert a["ranks"] == b["ranks"]
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
