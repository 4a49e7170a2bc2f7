"""Config options shared by the pipeline subcommands: --preset, --config, and one flag per
option, grouped by config section, with the help text the option declares."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any

from svdtrain.pipeline.config import (
    OPTIONS, RECIPES, SECTIONS, Option, RunConfig, recipe_values, resolve_config, saved_config, to_flags,
)  # fmt: skip
from svdtrain.pipeline.config.options import shown_value
from svdtrain.pipeline.run_folder import RunFolder


def flag_text(text: str, default: Any) -> Any:
    """A flag's text as the option's type reads it: a list option's comma-separated items, else the
    text itself (the option's type checks and converts it, as it does a config file's value)."""
    return [item for item in text.split(",") if item.strip()] if isinstance(default, list) else text


def _metavar(option: Option) -> str:
    """What a flag takes, as ``--help`` shows it: its choices where its type lists them."""
    choices = typing.get_args(typing.get_type_hints(option.owner)[option.name])
    if choices and all(isinstance(choice, str) for choice in choices):
        return "{" + ",".join(choices) + "}"
    return {list: "N,N", bool: "BOOL", int: "N", float: "X"}.get(type(option.default), "TEXT")


def add_config_options(parser: argparse.ArgumentParser, *, out_required: bool = True) -> None:
    parser.add_argument("--out", type=Path, required=out_required, help="run folder")
    parser.add_argument("--preset", help="a named preset (see 'svdtrain presets')")
    parser.add_argument("--config", help="a YAML config file of sections (optim: {lr: 0.01})")
    parser.add_argument("--print-config", action="store_true", help="print each option's final value and the "
                        "source it came from (default, preset, file, recipe, command line), then stop")
    groups = {"": parser.add_argument_group("model")}
    for name, section in SECTIONS.items():
        groups[name] = parser.add_argument_group(section.__doc__.strip())
    for flag, option in OPTIONS.items():
        default = option.default
        shown = shown_value(default)
        shown = f"{shown}{_in_recipes(flag)}"
        groups[option.section].add_argument(
            "--" + flag.replace("_", "-"), dest=f"field_{flag}", default=argparse.SUPPRESS, metavar=_metavar(option),
            type=lambda text, d=default: flag_text(text, d), help=f"{option.help} (default: {shown})".replace("%", "%%"),
        )  # fmt: skip  (argparse formats help with %)


def _in_recipes(flag: str) -> str:
    """What the recipes set ``flag`` to, for its help: "; whiten in the budget and truncation recipes"."""
    by_value: dict[str, list[str]] = {}
    for name in RECIPES:
        values = recipe_values(name)
        if flag in values:
            by_value.setdefault(shown_value(values[flag]), []).append(name)
    return "".join(f"; {value} in the {' and '.join(names)} recipe{'s' * (len(names) > 1)}"
                   for value, names in by_value.items())  # fmt: skip


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {key.removeprefix("field_"): value for key, value in vars(args).items() if key.startswith("field_")}


def config_from(args: argparse.Namespace, *, continuing: bool = False) -> RunConfig:
    """Preset < file < flags; for a lone stage with none given, over the run folder's config.json.
    When ``continuing`` a run folder that has a config, the options no source sets keep its values."""
    folder = RunFolder(args.out) if args.out else None
    saved = saved_config(folder) if folder and (continuing or not (args.preset or args.config)) else None
    return resolve_config(args.preset, args.config, overrides_from(args), saved=None if saved is None else saved.flat())


def config_table(config: RunConfig) -> str:
    """Each option's final value and where it came from, by section, as ``--print-config`` shows it."""
    origin = getattr(config, "origin", {})
    flat = config.flat()
    width = max(map(len, OPTIONS))
    lines, section = [], None
    for flag, option in OPTIONS.items():
        if option.section != section:
            section = option.section
            lines.append(f"{section or 'model'}:")
        lines.append(f"  {flag:<{width}}  {shown_value(flat[flag])}  ({origin.get(flag, 'the default')})")
    return "\n".join(lines)
