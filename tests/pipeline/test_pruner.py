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
