"""The recipes: how a run with a MACs or speed target trains unless its preset, config file or
flags say otherwise (``recipe: auto``, the default; ``budget``, ``truncation`` or ``paper``
asked for by name).

Measured against plain and activation-aware truncation at the same MACs and epochs
(BENCHMARKS.md section 11): the budget recipe's levers together beat both truncations on
ResNet-20 channel-wise at 3x fewer MACs (by 0.83 points on CPU over two seeds, 0.77 on a GPU
over four), where the paper's recipe alone lost; it lost wherever the cut cost the model less:
ResNet-20 channel-wise at 2x (by 0.20), spatial-wise at 3x and 2x (0.29, 1.0), and ResNet-56
channel-wise at 3x (0.62). What separates them is what the cut costs, not the factor or the
scheme, so ``auto`` measures it when it can (a run from a checkpoint with a MACs target, no
dense epochs first; cut_probe.py): the activation-aware cut keeps 63% of the starting
accuracy where SVD training won and 76% to 94% where it lost, and ``auto`` SVD-trains under
70%; ResNet-20 spatial-wise at 5x, run after the line was drawn, kept 54% and SVD training won
by 1.14, where the factor rule below would have picked truncation. Without the measurement
(``svdtrain presets``, a speed target, a start that trains first) it falls back on the factor:
channel-wise from 2.5x (or a speed target) the budget recipe, else truncation. On the small
GPT the budget recipe did worse than the paper's, so language models keep it, as does any run
without a target (an energy or threshold rule, as the paper's presets): the options' own
defaults, every lever off.
"""

from __future__ import annotations

from typing import Any, Callable

from svdtrain.models import is_language_model
from svdtrain.pipeline.config.run_config import OPTIONS, RunConfig
from svdtrain.pipeline.config.sections import BUDGET_BELOW_KEPT, SVD_TRAINING_LEVERS

BUDGET_RECIPE: dict[str, Any] = {
    "gradual": True,  # cut towards the target after every SVD-training epoch (target_reduction only)
    "macs_weighted": True,  # pull each weight's singular values by what one costs in MACs
    "s_lr_scale": 10.0,  # Adam moves s by about lr per step whatever the weight: let it move
    "distill_weight": 0.9,  # distill from the dense model in fine-tuning ...
    "distill": True,  # ... and during SVD training (unless distillation is set off)
    "calibration": "whiten",  # cut what the layer's outputs miss least (SVD-LLM whitening)
}
# No SVD training: its epochs are spent fine-tuning the activation-aware truncation instead.
TRUNCATION_RECIPE: dict[str, Any] = {"distill_weight": 0.9, "calibration": "whiten"}
# What the recipes set, as ``--help`` shows it: the truncation recipe's epochs as _epochs_moved moves them.
RECIPE_SETTINGS: dict[str, dict[str, Any]] = {
    "budget": BUDGET_RECIPE,
    "truncation": {**TRUNCATION_RECIPE, "svd_epochs": 0, "finetune_epochs": "svd_epochs + finetune_epochs"},
}
# What each recipe does, as a run's log opens with it.
RECIPE_SUMMARIES = {
    "budget": "SVD training towards the target (gradual cuts, MACs-weighted sparsity, s at 10x the rate, "
              "distillation, activation-aware cuts), then fine-tuning",
    "truncation": "no SVD training: activation-aware truncation, every epoch fine-tuning it "
                  "(--recipe budget SVD-trains)",
    "paper": "SVD training with the options as set, one cut, then fine-tuning",
}
# Without that measurement: channel-wise MACs cuts from this factor on SVD-train (truncation
# measured ahead at 2x, behind at 3x).
BUDGET_FROM_REDUCTION = 2.5
# Measures a run's cut: the kept fraction of the starting accuracy, or None where the starting
# model is too weak for it to mean anything (svdtrain.pipeline.cut_probe).
Measure = Callable[[RunConfig], "float | None"]


def chosen_recipe(flags: dict[str, Any], measure: Measure | None = None) -> str:
    """The recipe ``flags`` (the options a preset, file or command line set) run with."""
    return recipe_choice(flags, measure)[0]


def recipe_choice(flags: dict[str, Any], measure: Measure | None = None) -> tuple[str, str]:
    """The recipe ``flags`` run with, and why, in a few words (``svdtrain presets NAME`` shows it);
    with ``measure``, recipe auto measures the cut where :func:`measures_cut` says it can."""
    recipe = flags.get("recipe", "auto")
    if recipe != "auto":
        return recipe, "named"
    reduction, speedup = flags.get("target_reduction"), flags.get("target_speedup")
    if is_language_model(flags.get("model", "")):
        return "paper", "a language model: the budget recipe measured worse there"
    if not (reduction or speedup):
        return "paper", "no MACs or speed target"
    if levers := _levers_set(flags):
        return "budget", f"{', '.join(levers)} asks for SVD training"
    kept = measure(RunConfig.from_flags(with_recipe({**flags, "recipe": "truncation"}))) if (
        measure is not None and measures_cut(flags)) else None  # fmt: skip
    if kept is not None:
        recipe = "budget" if kept < BUDGET_BELOW_KEPT else "truncation"
        side, best = ("under", "SVD training") if recipe == "budget" else ("at or over", "truncation")
        return recipe, (f"the activation-aware cut keeps {kept:.0%} of the starting accuracy, {side} "
                        f"{BUDGET_BELOW_KEPT:.0%}: {best} measured best there")
    if flags.get("scheme") == "spatial":
        return "truncation", "a spatial-wise cut: truncation measured best there"
    if speedup:
        return "budget", "a channel-wise speed target"
    if reduction >= BUDGET_FROM_REDUCTION:
        return "budget", f"a channel-wise cut of {BUDGET_FROM_REDUCTION}x or more: SVD training measured best there"
    return "truncation", f"a channel-wise cut under {BUDGET_FROM_REDUCTION}x: truncation measured best there"


def measures_cut(flags: dict[str, Any]) -> bool:
    """Whether recipe auto measures the cut before the run trains: an image model left to auto
    with no SVD-training lever set, a MACs target, and a start that is a checkpoint decomposed as
    it is (no dense epochs first)."""
    start_epochs = flags.get("start_epochs", OPTIONS["start_epochs"].default)
    return bool(flags.get("recipe", "auto") == "auto" and not is_language_model(flags.get("model", ""))
                and not _levers_set(flags) and flags.get("target_reduction") and flags.get("checkpoint")
                and not start_epochs and flags.get("init", OPTIONS["init"].default) == "svd")  # fmt: skip


def with_recipe(flags: dict[str, Any], measure: Measure | None = None) -> dict[str, Any]:
    """``flags`` with their recipe's values filling in the options left unset, and the recipe
    named (so the run folder's config says which one ran, and a resumed run keeps it)."""
    recipe = chosen_recipe(flags, measure)
    if recipe == "truncation":
        levers = _levers_set(flags)  # checked at the start only: a folder saved before this check still resumes
        if levers:
            raise ValueError(f"recipe truncation skips SVD training, so {', '.join(levers)} would do nothing: "
                             "drop it or set recipe budget")
        return {**TRUNCATION_RECIPE, **flags, "recipe": recipe, **_epochs_moved(flags)}
    if recipe == "paper":
        return {**flags, "recipe": recipe}
    values = dict(BUDGET_RECIPE)
    if not flags.get("target_reduction"):
        del values["gradual"]  # gradual cuts step towards a MACs factor
    if flags.get("distill_weight") == 0:
        del values["distill"]  # distillation set off stays off
    return {**values, **flags, "recipe": recipe}


def resumed_with_recipe(saved: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """A resumed run's flags: the ``saved`` values for the options ``flags`` (its sources) leave
    unset, a recipe the sources name resolved as at the start, and the truncation recipe's epochs
    moved again from what the sources name (the saved ones are already moved)."""
    merged = {**saved, **flags}
    if flags.get("recipe") == "auto":  # the start chose, perhaps by measuring: keep its choice
        merged["recipe"] = saved["recipe"] if saved.get("recipe", "auto") != "auto" else chosen_recipe(merged)
    return {**merged, **_epochs_moved(flags)} if merged.get("recipe") == "truncation" else merged


def _levers_set(flags: dict[str, Any]) -> list[str]:
    """The SVD-training levers ``flags`` set away from their defaults."""
    defaults = {lever: OPTIONS[lever].default for lever in SVD_TRAINING_LEVERS}
    return [lever for lever, default in defaults.items() if flags.get(lever, default) != default]


def _epochs_moved(flags: dict[str, Any]) -> dict[str, int]:
    """The truncation recipe's epochs: the SVD-training ones fine-tune instead (the same in all)."""
    svd, finetune = (flags.get(flag, OPTIONS[flag].default) for flag in ("svd_epochs", "finetune_epochs"))
    return {"svd_epochs": 0, "finetune_epochs": svd + finetune}
