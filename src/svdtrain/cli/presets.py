"""``svdtrain presets``: list the presets and the recipes with their values, or print one."""

from __future__ import annotations

import argparse

from svdtrain.cli.options import shown_value
from svdtrain.pipeline.config import OPTIONS, RECIPES, preset_names, preset_path, recipe_path, recipe_summary, recipe_values


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("presets", help="list presets and recipes, or show one")
    parser.add_argument("name", nargs="?", help="a preset or recipe to show: its description and settings")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.name in RECIPES:
        print(recipe_path(args.name).read_text().rstrip())
    elif args.name:
        print(preset_path(args.name).read_text().rstrip())
    else:
        print("presets (svdtrain run --preset NAME; `svdtrain presets NAME` shows one):")
        print("\n".join(f"  {name}" for name in preset_names()))
        print("recipes (--recipe NAME, or recipe: under svd_train; a value contradicting one is an error):")
        print("\n".join(f"  {name}: {recipe_summary(name)}\n    sets: {_settings(name)}" for name in RECIPES))
    return 0


def _settings(name: str) -> str:
    """The recipe's values as a config file names them, or "nothing"."""
    values = recipe_values(name)
    return ", ".join(f"{OPTIONS[flag].section}.{OPTIONS[flag].name}: {shown_value(value)}"
                     for flag, value in values.items()) or "nothing (the options as set)"  # fmt: skip
