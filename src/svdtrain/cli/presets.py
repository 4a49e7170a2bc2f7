"""``svdtrain presets``: list the presets (what each does, its model, data and expected time) and
the recipes with their values, or print one."""

from __future__ import annotations

import argparse
import os

from svdtrain.data.locate import CACHE, ENV, locate
from svdtrain.pipeline.config.options import shown_value
from svdtrain.pipeline.config import (
    OPTIONS, RECIPES, preset_names, preset_notes, preset_path, recipe_path, recipe_summary, recipe_values,
    resolve_config,
)  # fmt: skip


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
        print("\n".join(_preset_lines(name) for name in preset_names()))
        print(_where_data_are())
        print("recipes (--recipe NAME, or recipe: under svd_train; a value contradicting one is an error):")
        print("\n".join(f"  {name}: {recipe_summary(name)}\n    sets: {_settings(name)}" for name in RECIPES))
    return 0


def _preset_lines(name: str) -> str:
    """``name: description``, then its model, data, start checkpoint and time, then the command
    to run first where it starts from another run's checkpoint."""
    notes, config = preset_notes(name), resolve_config(name)
    d, checkpoint = config.data, config.start.checkpoint
    where = ", downloaded if missing" if d.download else "" if _found(d.path) else ", not found"
    data = "scikit-learn's digits (bundled)" if d.dataset == "digits" else f"{d.path} ({d.dataset}{where})"
    start = [f"start {checkpoint}{'' if _found(checkpoint) else ' (not found)'}"] if checkpoint else []
    first = f"\n    first: {notes.needs}" if notes.needs else ""
    return f"  {name}: {notes.description}\n    " + "; ".join([f"model {config.model}", f"data {data}", *start,
                                                              notes.time]) + first  # fmt: skip


def _found(path: str) -> bool:
    try:
        return locate(path, what=path).exists()
    except FileNotFoundError:
        return False


def _where_data_are() -> str:
    folders = os.environ.get(ENV) or "not set"
    return (f"files: a preset's data and start checkpoint are taken from the current directory, else from the\n"
            f"folders in ${ENV} ({folders}), else from {CACHE}; --data PATH and --checkpoint PATH name others")


def _settings(name: str) -> str:
    """The recipe's values as a config file names them, or "nothing"."""
    values = recipe_values(name)
    return ", ".join(f"{OPTIONS[flag].section}.{OPTIONS[flag].name}: {shown_value(value)}"
                     for flag, value in values.items()) or "nothing (the options as set)"  # fmt: skip
