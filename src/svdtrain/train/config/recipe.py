"""The budget recipe: how an image model with a MACs or speed target trains unless its preset,
config file or flags say otherwise (``recipe: auto``, the default; ``budget`` always, ``paper``
never).

Measured against plain and activation-aware truncation at the same MACs and epochs
(BENCHMARKS.md section 11): on ResNet-20 the paper's recipe alone (one cut after SVD training,
sparsity blind to the budget) lost to truncation; these levers together beat both. On the
small GPT they did worse than the paper's recipe (section 11, language models), so language
models keep it, as does any run without a target (an energy or threshold rule, as the paper's
presets): the options' own defaults, every lever off.
"""

from __future__ import annotations

from typing import Any

from svdtrain.models import is_language_model

BUDGET_RECIPE: dict[str, Any] = {
    "gradual": True,  # cut towards the target after every SVD-training epoch (target_reduction only)
    "macs_weighted": True,  # pull each weight's singular values by what one costs in MACs
    "s_lr_scale": 10.0,  # Adam moves s by about lr per step whatever the weight: let it move
    "distill_weight": 0.9,  # distill from the dense model in fine-tuning ...
    "distill": True,  # ... and during SVD training (unless distillation is set off)
    "calibration": "whiten",  # cut what the layer's outputs miss least (SVD-LLM whitening)
}


def with_budget_recipe(flags: dict[str, Any]) -> dict[str, Any]:
    """``flags`` (the options a preset, file or command line set) with the budget recipe filling
    in those left unset, where their ``recipe`` asks for it (``auto``: an image model with a
    target); otherwise ``flags`` as is."""
    recipe = flags.get("recipe", "auto")
    has_target = bool(flags.get("target_reduction") or flags.get("target_speedup"))
    language = is_language_model(flags.get("model", ""))
    if recipe == "paper" or (recipe == "auto" and (language or not has_target)):
        return flags
    values = dict(BUDGET_RECIPE)
    if not flags.get("target_reduction"):
        del values["gradual"]  # gradual cuts step towards a MACs factor
    if flags.get("distill_weight") == 0:
        del values["distill"]  # distillation set off stays off
    return {**values, **flags}
