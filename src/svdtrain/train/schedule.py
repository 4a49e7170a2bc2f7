"""Step decay of the learning rate, counted in optimizer steps.

Milestones below 1 are fractions of the stage, so a preset's ``[0.75]`` means three quarters
of the stage however many epochs it has. Counting in steps matters for short stages: rounded to
whole epochs, 0.75 of a 1- or 2-epoch stage rounds to its end (Python rounds 1.5 to 2), and the
rate never dropped there while a 3-epoch stage got a full low-rate epoch (BENCHMARKS.md
section 11: it decided the GPT comparison of SVD training with truncation).
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
