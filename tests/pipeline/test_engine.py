"""The pipeline's engine: the one rank policy a config sets (a target, else a threshold, else energy),
its gradual cuts and the energy measure, all through SVDTraining."""

import pytest
import torch

from svdtrain import Energy, MacsBudget, Speedup, Threshold
from svdtrain import SVDTrainingConfig
from svdtrain.train.svd_policy import policy_for

EXAMPLE, SPEED_EXAMPLE = torch.randn(1, 8), torch.randn(4, 8)


def _policy(max_macs=None, **fields):
    return policy_for(SVDTrainingConfig(**fields), example=EXAMPLE, speed_example=SPEED_EXAMPLE, baseline_macs=1000,
                      max_macs=max_macs)  # fmt: skip


def test_speedup_wins_and_is_timed_on_a_cpu_copy_at_the_speed_batch():
    policy = _policy(target_speedup=2.0, energy=0.2, rank_multiple=4)
    assert isinstance(policy, Speedup) and policy.factor == 2.0 and policy.multiple == 4
    assert policy.example is SPEED_EXAMPLE and policy.device == "cpu" and policy.dtype == torch.float32


@pytest.mark.parametrize("allocation, multiple", [("greedy", 8), ("energy", 1)])
def test_a_reduction_is_a_macs_budget_of_the_baseline(allocation, multiple):
    policy = _policy(target_reduction=4.0, rank_allocation=allocation, rank_multiple=multiple)
    assert policy == MacsBudget(EXAMPLE, max_macs=250, allocation=allocation, multiple=multiple)
    assert _policy(120, target_reduction=4.0).max_macs == 120  # a gradual cut's own budget


@pytest.mark.parametrize("flags", [{"rank_allocation": "energy", "rank_multiple": 8}, {"rank_multiple": 0}])
def test_a_rank_multiple_that_cannot_apply_is_an_error_in_the_library_and_the_pipeline(flags):
    """It was silently set to 1 in the pipeline and refused in the library; now both refuse it."""
    from svdtrain.pipeline.config import resolve_config

    target = {"target_reduction": 2.0} if "rank_allocation" in flags else {}
    with pytest.raises(ValueError, match=r"^rank_multiple \d+ applies to target_speedup, or to target_reduction"):
        SVDTrainingConfig(**flags, **target)
    with pytest.raises(ValueError, match=r"^rank_multiple \d+ applies to target_speedup"):
        resolve_config("smoke", None, {**flags, **target})


def test_a_speed_target_times_on_the_device_and_in_the_dtype_the_section_names():
    policy = _policy(target_speedup=2.0, speed_dtype="bf16")
    assert (policy.device, policy.dtype, policy.compiled) == ("cpu", torch.bfloat16, False)
    assert _policy(target_speedup=2.0, speed_compiled=True).compiled
    with pytest.raises(ValueError, match="speed_device must be cpu, mps, cuda or cuda:N"):
        SVDTrainingConfig(target_speedup=2.0, speed_device="auto")


def test_then_threshold_then_energy():
    assert _policy(threshold=0.1, energy=0.2) == Threshold(0.1)
    assert _policy(energy=0.2) == Energy(0.2)


def _engine(tmp_path, flags):
    import svdtrain
    from svdtrain.pipeline.config import resolve_config
    from svdtrain.pipeline.engine import build_engine
    from svdtrain.pipeline.experiment import Experiment

    config = resolve_config("smoke", None, {"train_limit": 128, "test_limit": 64, **flags})
    experiment = Experiment(config, tmp_path, log=lambda line: None)
    model = svdtrain.decompose(experiment.dense_model(), init="svd")
    dense = svdtrain.count_macs(model, experiment.data.example)
    return build_engine(config, experiment.data, model, dense), experiment


def test_gradual_cuts_reach_the_target_after_the_nth_epoch_and_then_stop(tmp_path):
    """svd_train.gradual_cuts 2 of 4 epochs: the MACs budget shrinks geometrically over epochs 1-2,
    the target is met after epoch 2, and epochs 3-4 cut nothing (the trainer's cut)."""
    import svdtrain

    engine, experiment = _engine(tmp_path, {"target_reduction": 2.0, "gradual": True, "gradual_cuts": 2,
                                            "svd_epochs": 4})  # fmt: skip
    model, example, dense = engine.model, experiment.data.example, engine.baseline_macs
    optimizer = experiment.trainer.optimizer(model, 1e-3)
    macs = []
    for epoch in range(1, 5):
        changed = experiment.trainer._cut(engine, model, optimizer)
        assert changed == (epoch <= 2), epoch
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        assert held == {id(p) for p in model.parameters()}  # the optimizer followed the cut in place
        macs.append(svdtrain.count_macs(svdtrain.compact(model, example), example))
    assert dense / 2 < macs[0] <= dense / 2**0.5 and macs[1] <= dense / 2
    assert macs[1] == macs[2] == macs[3]
    assert engine.target_energy() == pytest.approx(1.0)


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
    from svdtrain.train import svd_policy

    def no_timing(*args, **kwargs):
        raise AssertionError("the energy measure timed the rank multiples")

    monkeypatch.setattr(svd_policy, "fastest_multiple", no_timing)
    engine, _ = _engine(tmp_path, {"target_reduction": 2.0, "rank_multiple": 0})
    assert 0 < engine.target_energy() < 1 and engine.measured_multiple is None


def test_the_engine_config_has_every_lever_of_the_pipeline_under_the_same_name_and_default():
    """SVDTrainingConfig and the pipeline's sections: one set of names, one set of defaults. The
    differences are the documented ones: init (the library decomposes the model it is given,
    the pipeline trains from scratch unless told) and gradual_cuts (the pipeline's gradual with
    0 cuts after every epoch)."""
    import dataclasses

    from svdtrain.pipeline.config import OPTIONS

    engine = {f.name: f.default for f in dataclasses.fields(SVDTrainingConfig) if f.name != "version"}
    pipeline = {o.name: o.default for o in OPTIONS.values() if o.section in ("start", "svd_train", "prune", "finetune")}
    assert set(engine) <= set(pipeline), set(engine) - set(pipeline)
    differing = {name for name in engine if engine[name] != pipeline[name]}
    assert differing == {"init"}, differing
    levers = {"s_lr_scale", "proximal", "macs_weighted", "budget_tail", "distill", "target_speedup", "lean_start"}
    assert levers <= set(engine)
    from svdtrain.pipeline.config import resolve_config

    mapped = resolve_config(overrides={"dataset": "digits", "start_epochs": 1}).svd_training
    assert mapped.init == "random" and mapped.gradual_cuts == 0
