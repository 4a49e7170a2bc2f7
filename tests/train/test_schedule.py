"""Step decay counted in steps: fractional milestones fall inside short stages."""

from svdtrain.train.schedule import decay_factor, milestone_steps


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


def test_a_one_epoch_stage_trains_its_last_quarter_at_the_lower_rate(tmp_path, monkeypatch):
    from svdtrain.train import trainer as module
    from svdtrain.train.config import resolve_config
    from svdtrain.train.experiment import Experiment

    real_train_epoch, rates = module.train_epoch, []

    def recording(net, batches, optimizer, *args, before_step, **kwargs):
        def step(i):
            before_step(i)
            rates.append(optimizer.param_groups[0]["lr"])

        return real_train_epoch(net, batches, optimizer, *args, before_step=step, **kwargs)

    monkeypatch.setattr(module, "train_epoch", recording)
    overrides = {"start_epochs": 1, "train_limit": 512, "batch_size": 64, "lr": 0.01, "lr_milestones": [0.75]}
    Experiment(resolve_config("smoke", overrides=overrides), tmp_path).run_stage("start")
    assert rates == [0.01] * 6 + [0.001] * 2  # 8 steps: the drop at step 6, not never (0.75 rounded to 1 epoch)
