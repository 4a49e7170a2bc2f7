"""The pipeline's config: sections by concern, one flag per option, presets, recipes and files."""

from svdtrain.pipeline.config.preset_notes import PresetNotes, preset_notes
from svdtrain.pipeline.config.recipe import check_recipe, recipe_path, recipe_summary, recipe_values
from svdtrain.pipeline.config.resolve import config_record, recipe_overrides, resolve_config, saved_config
from svdtrain.pipeline.config.run_config import CONFIG_VERSION, OPTIONS, SECTIONS, Option, RunConfig
from svdtrain.pipeline.config.sections import IMAGE_DATASETS, RECIPES, TEXT_DATASETS
from svdtrain.pipeline.config.sources import load_preset, preset_names, preset_path, read_yaml, to_flags

__all__ = [
    "CONFIG_VERSION", "IMAGE_DATASETS", "OPTIONS", "Option", "PresetNotes", "RECIPES", "RunConfig", "SECTIONS",
    "TEXT_DATASETS", "check_recipe", "config_record", "load_preset", "preset_names", "preset_notes", "preset_path", "read_yaml",
    "recipe_overrides", "recipe_path", "recipe_summary", "recipe_values", "resolve_config", "saved_config", "to_flags",
]  # fmt: skip
