"""One config from its sources: defaults < preset < config file < command line, nothing else.

A resumed run starts from its saved config instead of the defaults. A source naming a recipe
gets the recipe's values at its own place in that order (recipe.py); no value is chosen,
measured or moved anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from svdtrain.pipeline.config.recipe import check_recipe, recipe_values
from svdtrain.pipeline.config.run_config import RunConfig
from svdtrain.pipeline.config.sources import load_preset, read_yaml, to_flags


def resolve_config(
    preset: str | None = None, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
    saved: dict[str, Any] | None = None,
) -> RunConfig:
    """The config ``preset`` < ``config_file`` < ``overrides`` (flags or sections) give, over
    ``saved`` (a resumed run's flags) or the defaults, validated."""
    sources = []
    if preset:
        sources.append((f"preset {preset}", load_preset(preset)))
    if config_file:
        sources.append((str(config_file), to_flags(read_yaml(Path(config_file)), str(config_file))))
    if overrides:
        sources.append(("the command line", to_flags(overrides, "the command line")))
    values = dict(saved or {})
    origin = dict.fromkeys(values, "the resumed run's config.json")
    for source, flags in sources:
        if "recipe" in flags:
            recipe = recipe_values(flags["recipe"])
            values.update(recipe)
            origin.update(dict.fromkeys(recipe, f"recipe {flags['recipe']} (named by {source})"))
        values.update(flags)
        origin.update(dict.fromkeys(flags, source))
    check_recipe(values, origin)
    return RunConfig.from_flags(values)
