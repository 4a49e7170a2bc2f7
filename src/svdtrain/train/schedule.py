"""Step decay of the learning rate, counted in optimizer steps.

Milestones below 1 are fractions of the stage, so a preset's ``[0.75]`` means three quarters
of the stage however many epochs it has. Counting in steps matters for short stages: rounded to
whole epochs, 0.75 of a 1- or 2-epoch stage rounds to its end (Python rounds 1.5 to 2), and the
rate never dropped there while a 3-epoch stage got a full low-rate epoch (benchmarks/JOURNAL.md
section 11: it decided the GPT comparison of SVD training with truncation).

The milestones restart in every stage (``lr_schedule: stage``, the paper's), or SVD training
and fine-tuning share one schedule (``run``): fine-tuning then goes on at the rate SVD training
ended with instead of climbing back to the initial rate right after the cut.
"""

from __future__ import annotations


def milestone_steps(milestones: list[float], epochs: int, steps_per_epoch: int) -> list[int]:
    """The step (0-based, counted over the stage) at which each milestone takes effect:
    ``m < 1`` at that fraction of the stage's steps, ``m >= 1`` at the start of epoch ``int(m)``."""
    return [round(m * epochs * steps_per_epoch) if m < 1 else int(m) * steps_per_epoch for m in milestones]


def decay_factor(milestones: list[float], gamma: float, step: int, epochs: int, steps_per_epoch: int) -> float:
    """The factor on the initial rate for the stage's ``step``-th optimizer step: ``gamma`` once
    per milestone reached. A function of the step alone, so a resumed stage gets the same rates."""
    reached = sum(step >= at for at in milestone_steps(milestones, epochs, steps_per_epoch))
    return gamma**reached


def shared_span(schedule: str, stage: str, svd_epochs: int, finetune_epochs: int) -> tuple[int, int] | None:
    """For a stage under ``schedule``: (epochs of the shared schedule before the stage, epochs it
    spans), or None when the stage schedules alone (every stage under "stage"; the start stage)."""
    if schedule != "run" or stage not in ("svd_train", "finetune"):
        return None
    return (0 if stage == "svd_train" else svd_epochs), svd_epochs + finetune_epochs
