"""``svdtrain presets``: list the named presets, or print one."""

from __future__ import annotations

import argparse

from svdtrain.cli.options import shown_value
from svdtrain.pipeline.config import (
    BUDGET_BELOW_KEPT, OPTIONS, load_preset, measures_cut, preset_names, preset_path, recipe_choice, with_recipe,
)  # fmt: skip


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("presets", help="list presets, or show what one does")
    parser.add_argument("name", nargs="?", help="a preset to show: its description and settings")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        print(preset_path(args.name).read_text().rstrip())
        print(recipe_line(load_preset(args.name)))
    else:
        print("\n".join(preset_names()))
    return 0


def recipe_line(flags: dict) -> str:
    """The recipe a preset runs, why, and what it changes, named as the preset's sections name them."""
    recipe, why = recipe_choice(flags)
    if why == "named":
        return f"# recipe {recipe} (set above){_sets(flags)}"
    if measures_cut(flags):
        return (f"# recipe auto measures the activation-aware cut when the run starts: the budget recipe if it keeps "
                f"under {BUDGET_BELOW_KEPT:.0%} of the starting accuracy{_sets({**flags, 'recipe': 'budget'})}; "
                f"else the truncation recipe{_sets({**flags, 'recipe': 'truncation'})}")
    return f"# recipe auto picks {recipe} ({why}){_sets(flags)}"


def _sets(flags: dict) -> str:
    """", which sets section.field: value, ..." for what ``flags``' recipe changes, or ""."""
    changed = {flag: value for flag, value in with_recipe(flags).items()
               if flags.get(flag, ...) != value and flag != "recipe"}  # fmt: skip
    if not changed:
        return ""
    return ", which sets " + ", ".join(f"{OPTIONS[flag].section}.{OPTIONS[flag].name}: {shown_value(value)}"
                                       for flag, value in changed.items())  # fmt: skip
