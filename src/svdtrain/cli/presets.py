"""``svdtrain presets``: list the named presets, or print one."""

from __future__ import annotations

import argparse

from svdtrain.train.config import preset_names, preset_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("presets", help="list presets, or show what one does")
    parser.add_argument("name", nargs="?", help="a preset to show: its description and settings")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        print(preset_path(args.name).read_text().rstrip())
    else:
        print("\n".join(preset_names()))
    return 0
