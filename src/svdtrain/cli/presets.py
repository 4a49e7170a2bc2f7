"""``svdtrain presets``: list the named presets, or print one."""

from __future__ import annotations

import argparse

from svdtrain.train.config import load_preset, preset_names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("presets", help="list presets, or show one")
    parser.add_argument("name", nargs="?", help="a preset to print")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        import yaml

        print(yaml.safe_dump(load_preset(args.name), sort_keys=False).rstrip())
    else:
        print("\n".join(preset_names()))
    return 0
