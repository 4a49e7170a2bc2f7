"""How a run executes: subnormal floats flushed to zero on CPU unless told not to."""

import torch

from svdtrain.train.config import resolve_config
from svdtrain.train.experiment import Experiment


def test_a_run_flushes_subnormals_to_zero_unless_told_not_to(tmp_path):
    subnormal = torch.tensor([1e-39])  # below float32's smallest normal, 1.2e-38
    try:
        Experiment(resolve_config("smoke"), tmp_path)
        assert (subnormal * 1.0).item() == 0.0
        Experiment(resolve_config("smoke", overrides={"flush_denormals": False}), tmp_path)
        assert (subnormal * 1.0).item() > 0.0
    finally:
        torch.set_flush_denormal(False)  # process-wide: leave the other tests as they were
