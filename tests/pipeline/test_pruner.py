"""policy_from_config: the one rank policy a prune section sets (a target, else a threshold, else energy)."""

import pytest
import torch

from svdtrain import Energy, MacsBudget, Speedup, Threshold
from svdtrain.pipeline.config.sections import PruneConfig
from svdtrain.pipeline.pruner import policy_from_config

EXAMPLE, SPEED_EXAMPLE = torch.randn(1, 8), torch.randn(4, 8)


def _policy(max_macs=None, **fields):
    return policy_from_config(PruneConfig(**fields), example=EXAMPLE, speed_example=SPEED_EXAMPLE,
                              baseline_macs=1000, max_macs=max_macs)  # fmt: skip


def test_speedup_wins_and_is_timed_on_a_cpu_copy_at_the_speed_batch():
    policy = _policy(target_speedup=2.0, energy=0.2, rank_multiple=4)
    assert isinstance(policy, Speedup) and policy.factor == 2.0 and policy.multiple == 4
    assert policy.example is SPEED_EXAMPLE and policy.device == "cpu" and policy.dtype == torch.float32


@pytest.mark.parametrize("allocation, multiple", [("greedy", 8), ("energy", 1)])
def test_a_reduction_is_a_macs_budget_of_the_baseline(allocation, multiple):
    policy = _policy(target_reduction=4.0, rank_allocation=allocation, rank_multiple=8)
    assert policy == MacsBudget(EXAMPLE, max_macs=250, allocation=allocation, multiple=multiple)
    assert _policy(120, target_reduction=4.0).max_macs == 120  # a gradual cut's own budget


def test_a_speed_target_times_on_the_device_and_in_the_dtype_the_section_names():
    policy = _policy(target_speedup=2.0, speed_dtype="bf16")
    assert (policy.device, policy.dtype, policy.compiled) == ("cpu", torch.bfloat16, False)
    assert _policy(target_speedup=2.0, speed_compiled=True).compiled
    with pytest.raises(ValueError, match="speed_device must be cpu, mps, cuda or cuda:N"):
        PruneConfig(target_speedup=2.0, speed_device="auto")


def test_then_threshold_then_energy():
    assert _policy(threshold=0.1, energy=0.2) == Threshold(0.1)
    assert _policy(energy=0.2) == Energy(0.2)


def test_gradual_cuts_reach_the_target_after_the_nth_epoch_and_then_stop(tmp_path):
    """svd_train.gradual_cuts 2 of 4 epochs: the MACs budget shrinks geometrically over epochs 1-2,
    the target is met after epoch 2, and epochs 3-4 cut nothing."""
    import svdtrain
    from svdtrain.pipeline.config import resolve_config
    from svdtrain.pipeline.experiment import Experiment
    from svdtrain.pipeline.pruner import Pruner

    config = resolve_config("smoke", None, {"target_reduction": 2.0, "gradual": True, "gradual_cuts": 2,
                                            "svd_epochs": 4, "train_limit": 128, "test_limit": 64})  # fmt: skip
    experiment = Experiment(config, tmp_path, log=lambda line: None)
    model = svdtrain.decompose(experiment.dense_model(), init="svd")
    example = experiment.data.example
    dense = svdtrain.count_macs(model, example)
    pruner = Pruner(config, experiment.data, torch.device("cpu"), dense, speed_example=example, log=lambda line: None)
    macs = []
    for epoch in range(1, 5):
        changed = pruner.gradual_step(model, epoch)
        assert changed == (epoch <= 2), epoch
        macs.append(svdtrain.count_macs(svdtrain.compact(model, example), example))
    assert dense / 2 < macs[0] <= dense / 2**0.5 and macs[1] <= dense / 2
    assert macs[1] == macs[2] == macs[3]
    assert pruner.target_energy(model) == {"target_energy": pytest.approx(1.0)}


@pytest.mark.parametrize("flags, message", [
    ({"gradual_cuts": 2}, "gradual_cuts counts gradual cuts: set gradual true"),
    ({"gradual": True, "gradual_cuts": 5, "svd_epochs": 4, "target_reduction": 2.0}, "gradual_cuts 5 needs as many"),
    ({"recipe": "truncation", "gradual_cuts": 1}, "recipe truncation skips SVD training, so gradual_cuts"),
])  # fmt: skip
def test_gradual_cuts_that_cannot_act_are_refused(flags, message):
    from svdtrain.pipeline.config import resolve_config

    with pytest.raises(ValueError, match=message):
        resolve_config("smoke", None, flags)


def test_the_energy_measure_never_measures_the_rank_multiple(tmp_path, monkeypatch):
    """rank_multiple 0 is measured at the first cut; the per-epoch energy must not move it earlier."""
    import svdtrain
    from svdtrain.pipeline import pruner as pruner_module
    from svdtrain.pipeline.config import resolve_config
    from svdtrain.pipeline.experiment import Experiment

    def no_timing(*args, **kwargs):
        raise AssertionError("the energy measure timed the rank multiples")

    monkeypatch.setattr(pruner_module, "fastest_multiple", no_timing)
    config = resolve_config("smoke", None, {"target_reduction": 2.0, "rank_multiple": 0, "train_limit": 128})
    experiment = Experiment(config, tmp_path, log=lambda line: None)
    model = svdtrain.decompose(experiment.dense_model(), init="svd")
    example = experiment.data.example
    pruner = pruner_module.Pruner(config, experiment.data, torch.device("cpu"), svdtrain.count_macs(model, example),
                                  speed_example=example, log=lambda line: None)  # fmt: skip
    assert 0 < pruner.target_energy(model)["target_energy"] < 1
