"""Step decay counted in steps: fractional milestones fall inside short stages; a run schedule
carries the rate from SVD training into fine-tuning."""

import pytest

from svdtrain.pipeline.config import resolve_config
from svdtrain.pipeline.experiment import Experiment
from svdtrain.train.schedule import decay_factor, milestone_steps, shared_span


def test_a_fraction_of_a_short_stage_lands_inside_it():
    assert milestone_steps([0.75], epochs=1, steps_per_epoch=100) == [75]
    assert milestone_steps([0.75], epochs=2, steps_per_epoch=100) == [150]  # not rounded to the end (1.5 -> 2)
    assert milestone_steps([0.6], epochs=4, steps_per_epoch=10) == [24]


def test_whole_epoch_milestones_fall_on_epoch_starts():
    assert milestone_steps([81, 122], epochs=164, steps_per_epoch=391) == [81 * 391, 122 * 391]
    assert milestone_steps([0.75], epochs=4, steps_per_epoch=7) == [21]  # 3 epochs: as before


def test_the_factor_counts_milestones_reached():
    factors = [decay_factor([0.5, 0.75], 0.1, step, epochs=1, steps_per_epoch=8) for step in range(8)]
    assert factors[:4] == [1.0] * 4 and factors[4:6] == [0.1] * 2
    assert all(abs(f - 0.01) < 1e-12 for f in factors[6:])
    assert decay_factor([], 0.1, 10**6, epochs=1, steps_per_epoch=1) == 1.0


def test_a_run_schedule_spans_svd_training_and_fine_tuning():
    assert shared_span("run", "svd_train", 4, 5) == (0, 9) and shared_span("run", "finetune", 4, 5) == (4, 9)
    assert shared_span("stage", "finetune", 4, 5) is None and shared_span("run", "start", 4, 5) is None


def _recorded_rates(monkeypatch) -> list[float]:
    from svdtrain.pipeline import trainer as module

    real_train_epoch, rates = module.train_epoch, []

    def recording(net, batches, optimizer, *args, before_step, **kwargs):
        def step(i):
            before_step(i)
            rates.append(optimizer.param_groups[0]["lr"])

        return real_train_epoch(net, batches, optimizer, *args, before_step=step, **kwargs)

    monkeypatch.setattr(module, "train_epoch", recording)
    return rates


def test_a_one_epoch_stage_trains_its_last_quarter_at_the_lower_rate(tmp_path, monkeypatch):
    rates = _recorded_rates(monkeypatch)
    overrides = {"start_epochs": 1, "train_limit": 512, "batch_size": 64, "lr": 0.01, "lr_milestones": [0.75]}
    Experiment(resolve_config("smoke", overrides=overrides), tmp_path).run_stage("start")
    assert rates == [0.01] * 6 + [0.001] * 2  # 8 steps: the drop at step 6, not never (0.75 rounded to 1 epoch)


@pytest.mark.parametrize("schedule, svd_rates, finetune_rates", [
    ("stage", [0.01] * 6 + [0.001] * 2, [0.01] * 6 + [0.001] * 2),
    ("run", [0.01] * 8, [0.01] * 4 + [0.001] * 4),  # 0.75 of 16 steps: step 12, the 5th of fine-tuning
])  # fmt: skip
def test_fine_tuning_goes_on_from_svd_trainings_rate_under_a_run_schedule(tmp_path, monkeypatch, schedule,
                                                                           svd_rates, finetune_rates):  # fmt: skip
    overrides = {"start_epochs": 0, "svd_epochs": 1, "finetune_epochs": 1, "train_limit": 512, "batch_size": 64,
                 "lr": 0.01, "lr_milestones": [0.75], "lr_schedule": schedule}  # fmt: skip
    experiment = Experiment(resolve_config("smoke", overrides=overrides), tmp_path)
    experiment.run_stage("start")
    rates = _recorded_rates(monkeypatch)
    experiment.run_stage("svd_train")
    assert rates == svd_rates
    rates.clear()
    experiment.run_stage("prune")
    experiment.run_stage("finetune")
    assert rates == finetune_rates
