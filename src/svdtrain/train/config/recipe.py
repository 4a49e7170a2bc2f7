"""The recipes: how a run with a MACs or speed target trains unless its preset, config file or
flags say otherwise (``recipe: auto``, the default; ``budget``, ``truncation`` or ``paper``
asked for by name).

Measured against plain and activation-aware truncation at the same MACs and epochs
(BENCHMARKS.md section 11), ResNet-20 at 3x fewer MACs, two seeds each:

- channel-wise, the paper's recipe alone (one cut after SVD training, sparsity blind to the
  budget) lost to truncation; the budget recipe's levers together beat both truncations at 3x
  (by 0.83 points), but at 2x, where the cut costs less, activation-aware truncation beat it in
  both seeds (by 0.2), so ``auto`` gives channel-wise runs the budget recipe from a 2.5x MACs
  cut (between the two measured points) and with a speed target, and smaller cuts the
  truncation recipe (ResNet-20's measurements: on ResNet-56 at 3x channel-wise, one seed,
  activation-aware truncation beat the budget recipe by 0.62, so its preset names truncation;
  a factor alone does not say what a cut costs a given model);
- spatial-wise, where a cut costs less, activation-aware truncation with every epoch spent
  fine-tuning beat the budget recipe (by 0.29 points; at 2x, one seed, by 0.9), so ``auto``
  gives spatial-wise runs the truncation recipe;
- on the small GPT the budget recipe did worse than the paper's, so language models keep it,
  as does any run without a target (an energy or threshold rule, as the paper's presets): the
  options' own defaults, every lever off.
"""

from __future__ import annotations

from typing import Any

from svdtrain.models import is_language_model
from svdtrain.train.config.run_config import OPTIONS
from svdtrain.train.config.sections import SVD_TRAINING_LEVERS

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
# Channel-wise MACs cuts from this factor on SVD-train (measured: truncation ahead at 2x, behind at 3x).
BUDGET_FROM_REDUCTION = 2.5


def chosen_recipe(flags: dict[str, Any]) -> str:
    """The recipe ``flags`` (the options a preset, file or command line set) run with."""
    return recipe_choice(flags)[0]


def recipe_choice(flags: dict[str, Any]) -> tuple[str, str]:
    """The recipe ``flags`` run with, and why, in a few words (``svdtrain presets NAME`` shows it)."""
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
    if flags.get("scheme") == "spatial":
        return "truncation", "a spatial-wise cut: truncation measured best there"
    if speedup:
        return "budget", "a channel-wise speed target"
    if reduction >= BUDGET_FROM_REDUCTION:
        return "budget", f"a channel-wise cut of {BUDGET_FROM_REDUCTION}x or more: SVD training measured best there"
    return "truncation", f"a channel-wise cut under {BUDGET_FROM_REDUCTION}x: truncation measured best there"


def with_recipe(flags: dict[str, Any]) -> dict[str, Any]:
    """``flags`` with their recipe's values filling in the options left unset, and the recipe
    named (so the run folder's config says which one ran, and a resumed run keeps it)."""
    recipe = chosen_recipe(flags)
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
    if flags.get("recipe") == "auto":
        merged["recipe"] = chosen_recipe(merged)
    return {**merged, **_epochs_moved(flags)} if merged.get("recipe") == "truncation" else merged


def _levers_set(flags: dict[str, Any]) -> list[str]:
    """The SVD-training levers ``flags`` set away from their defaults."""
    defaults = {lever: OPTIONS[lever].default for lever in SVD_TRAINING_LEVERS}
    return [lever for lever, default in defaults.items() if flags.get(lever, default) != default]


def _epochs_moved(flags: dict[str, Any]) -> dict[str, int]:
    """The truncation recipe's epochs: the SVD-training ones fine-tune instead (the same in all)."""
    svd, finetune = (flags.get(flag, OPTIONS[flag].default) for flag in ("svd_epochs", "finetune_epochs"))
    return {"svd_epochs": 0, "finetune_epochs": svd + finetune}
