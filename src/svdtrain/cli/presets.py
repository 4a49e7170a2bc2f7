"""``svdtrain presets``: list the named presets, or print one."""

from __future__ import annotations

import argparse

from svdtrain.train.config import chosen_recipe, load_preset, preset_names, preset_path, with_recipe


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("presets", help="list presets, or show what one does")
    parser.add_argument("name", nargs="?", help="a preset to show: its description and settings")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        print(preset_path(args.name).read_text().rstrip())
        flags = load_preset(args.name)
        changed = {flag: value for flag, value in with_recipe(flags).items()
                   if flags.get(flag, ...) != value and flag != "recipe"}  # fmt: skip
        if changed:
            settings = ", ".join(f"{flag}: {value}" for flag, value in changed.items())
            why = "its" if "recipe" in flags else "since it sets a target, the"
            print(f"# and, {why} {chosen_recipe(flags)} recipe: {settings}")
    else:
        print("\n".join(preset_names()))
    return 0
