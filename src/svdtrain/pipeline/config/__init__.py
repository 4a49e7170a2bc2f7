"""The pipeline's config: sections by concern, one flag per option, presets and files."""

from svdtrain.pipeline.config.recipe import (
    BUDGET_RECIPE, RECIPE_SETTINGS, RECIPE_SUMMARIES, TRUNCATION_RECIPE, Measure, chosen_recipe, measures_cut,
    recipe_choice, with_recipe,
)  # fmt: skip
from svdtrain.pipeline.config.run_config import CONFIG_VERSION, OPTIONS, SECTIONS, Option, RunConfig
from svdtrain.pipeline.config.sections import BUDGET_BELOW_KEPT, IMAGE_DATASETS, RECIPES, TEXT_DATASETS
from svdtrain.pipeline.config.sources import load_preset, merge, preset_names, preset_path, read_yaml, resolve_config

__all__ = [
    "BUDGET_BELOW_KEPT", "BUDGET_RECIPE", "CONFIG_VERSION", "IMAGE_DATASETS", "Measure", "OPTIONS", "Option",
    "RECIPES", "RECIPE_SETTINGS", "RECIPE_SUMMARIES", "RunConfig", "SECTIONS", "TEXT_DATASETS", "TRUNCATION_RECIPE",
    "chosen_recipe", "load_preset", "measures_cut", "merge", "preset_names", "preset_path", "read_yaml",
    "recipe_choice", "resolve_config", "with_recipe",
]  # fmt: skip
