"""Recipes: named, visible sets of option values (``presets/recipes/NAME.yaml``).

A recipe is a base layer at the place of the source (preset, config file, command line) that
names it: it overrides the sources before that one, a value set explicitly there or later
overrides it, and a later source naming another recipe replaces it as a whole (resolve.py).
config.json shows the values that ran, the recipe, and each value that overrides it. Nothing
else picks a recipe: ``svdtrain probe`` measures the cut and recommends one, with its evidence;
the default is ``paper`` (the options as set, every lever off), with or without a target.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

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
    """Refuse ``values`` (resolved flags; ``origin``: which source set each) where the recipe they
    name cannot act on them. A value that differs from the recipe's is the user's choice, and
    wins (config.json records it as an override)."""
    name = values.get("recipe", OPTIONS["recipe"].default)
    if name == "truncation":
        levers = [lever for lever in SVD_TRAINING_LEVERS if values.get(lever, OPTIONS[lever].default)
                  != OPTIONS[lever].default]  # fmt: skip
        if levers:
            raise ValueError(f"recipe truncation skips SVD training, so {', '.join(levers)} would do nothing "
                             f"(set by {origin.get(levers[0], 'a source')}): drop it or set recipe budget")
        if values.get("svd_epochs", OPTIONS["svd_epochs"].default):
            raise ValueError(f"recipe truncation skips SVD training, but {origin.get('svd_epochs', 'a source')} sets "
                             f"svd_epochs {values['svd_epochs']}: drop it (the recipe sets 0) or set recipe paper")
    if name == "budget" and not values.get("target_reduction"):
        raise ValueError("recipe budget cuts gradually towards target_reduction: set it (> 1)")
