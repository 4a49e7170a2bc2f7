"""The budget recipe: how a run with a MACs or speed target trains unless its preset, config
file or flags say otherwise.

Measured against plain and activation-aware truncation at the same MACs and epochs
(BENCHMARKS.md section 11): the paper's recipe alone (one cut after SVD training, sparsity
blind to the budget) lost to truncation there; these levers together beat both. A run without a
target (an energy or threshold rule, as the paper's presets) keeps the plain defaults.
"""

from __future__ import annotations

from typing import Any

BUDGET_RECIPE: dict[str, Any] = {
    "gradual": True,  # cut towards the target after every SVD-training epoch (target_reduction only)
    "macs_weighted": True,  # pull each weight's singular values by what one costs in MACs
    "s_lr_scale": 10.0,  # Adam moves s by about lr per step whatever the weight: let it move
    "distill_weight": 0.9,  # distill from the dense model in fine-tuning ...
    "distill": True,  # ... and during SVD training
    "calibration": "whiten",  # cut what the layer's outputs miss least (SVD-LLM whitening)
}

# The paper's recipe: every lever above off, as the options' own defaults (fine-tuning's
# distillation weight is left to the preset). What comparisons pin to run the paper's method.
PAPER_RECIPE: dict[str, Any] = {"gradual": False, "macs_weighted": False, "s_lr_scale": 1.0, "distill": False,
                                "calibration": "none"}  # fmt: skip


def with_budget_recipe(flags: dict[str, Any]) -> dict[str, Any]:
    """``flags`` (the options a preset, file or command line set) with the budget recipe filling
    in those left unset, when they set a target; otherwise ``flags`` as is."""
    if not (flags.get("target_reduction") or flags.get("target_speedup")):
        return flags
    recipe = dict(BUDGET_RECIPE)
    if not flags.get("target_reduction"):
        del recipe["gradual"]  # gradual cuts step towards a MACs factor; a speedup is timed once
    return {**recipe, **flags}
