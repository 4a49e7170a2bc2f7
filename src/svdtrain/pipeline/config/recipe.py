"""Recipes: named, visible sets of option values (``presets/recipes/NAME.yaml``).

A source (preset, config file, command line) that names a recipe gets the recipe's values at
that source's place in the order, as if it had set them itself: a later source's value wins
over them as over any other, and config.json shows the values that ran. A recipe never
overrides a value the user set: a value that contradicts the recipe in force, from any source,
is an error naming both. Nothing else picks a recipe: ``svdtrain probe`` measures the cut and
recommends one, with its evidence; the default is ``paper`` (the options as set, every lever
off), with or without a MACs or speed target.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from svdtrain.pipeline.config.options import shown_value
from svdtrain.pipeline.config.run_config import OPTIONS
from svdtrain.pipeline.config.sections import SVD_TRAINING_LEVERS, check_recipe_name
from svdtrain.pipeline.config.sources import read_yaml, to_flags


def recipe_path(name: str) -> Path:
    check_recipe_name(name)
    return Path(str(resources.files("svdtrain.presets") / "recipes" / f"{name}.yaml"))


def recipe_values(name: str) -> dict[str, Any]:
    """The recipe's options as ``{flag: value}`` (a fresh dict: the caller may change it)."""
    return dict(_read_recipe(name))


@cache
def _read_recipe(name: str) -> dict[str, Any]:
    """Read once per process: the CLI's help reads every recipe for every option of every command."""
    return to_flags(read_yaml(recipe_path(name)), f"recipe {name}")


def recipe_summary(name: str) -> str:
    """What the recipe does: its file's opening comment, as one line."""
    lines = recipe_path(name).read_text().splitlines()
    return " ".join(line.removeprefix("#").strip() for line in lines if line.startswith("#"))


def check_recipe(values: dict[str, Any], origin: dict[str, str]) -> None:
    """Refuse ``values`` (resolved flags; ``origin``: which source set each) where they contradict
    the recipe they name, or where the recipe cannot act on them."""
    name = values.get("recipe", OPTIONS["recipe"].default)
    for flag, wanted in recipe_values(name).items():
        if values.get(flag, OPTIONS[flag].default) != wanted:
            raise ValueError(f"recipe {name} sets {flag} {shown_value(wanted)}, but {origin.get(flag, 'a source')} sets "
                             f"{shown_value(values[flag])}: drop one (`svdtrain presets` lists each recipe's values)")
    if name == "truncation":
        levers = [lever for lever in SVD_TRAINING_LEVERS if values.get(lever, OPTIONS[lever].default)
                  != OPTIONS[lever].default]  # fmt: skip
        if levers:
            raise ValueError(f"recipe truncation skips SVD training, so {', '.join(levers)} would do nothing: "
                             "drop it or set recipe budget")
    if name == "budget" and not values.get("target_reduction"):
        raise ValueError("recipe budget cuts gradually towards target_reduction: set it (> 1)")

