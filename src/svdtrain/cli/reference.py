"""docs/reference.md, generated: the subcommands from the parser, every config option from its
declaration (section, flag, type, default, help) and the recipes' values.

It lives beside the parser it reads (the CLI sits above the pipeline's config). Regenerate with
``python -m svdtrain.cli.reference --write``; tests/docs/test_reference.py fails while the page
and the declarations differ.

Example:
    >>> text = config_reference()
    >>> "| `--svd-epochs` |" in text
    True
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator
from pydantic.fields import FieldInfo

from svdtrain.cli import build_parser
from svdtrain.pipeline.config import OPTIONS, RECIPES, SECTIONS, Option, recipe_summary, recipe_values
from svdtrain.pipeline.config.options import above_one_or_zero, shown_value

PAGE = Path("docs") / "reference.md"
COMMAND = "python -m svdtrain.cli.reference --write"
_CONFIG_FLAGS = {"--out", "--preset", "--config", "--help"}  # shared by run, the stages, sweep and probe


def config_reference() -> str:
    """The Markdown of docs/reference.md, built from the parser, the options and the recipes."""
    parts = [
        "# CLI and config reference",
        "",
        f"Generated from the option declarations by `{COMMAND}`; do not edit it by hand.",
        "How to use the options, and which ones matter: [the method and its options](method.md) and "
        "[recipes](recipes.md).",
        "",
        *_commands(),
        *_sources(),
        *_options(),
        *_recipes(),
    ]
    return "\n".join(parts).rstrip() + "\n"


def _cell(text: Any) -> str:
    """Text for a Markdown table cell: pipes escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def _code(text: str) -> str:
    return f"`{text}`" if text else '`""`'


def _subparsers(parser: argparse.ArgumentParser) -> tuple[dict[str, str], dict[str, argparse.ArgumentParser]]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return helps, dict(action.choices)


def _commands() -> list[str]:
    helps, parsers = _subparsers(build_parser())
    lines = ["## Commands", "", "| command | what it does |", "| --- | --- |"]
    lines += [f"| `svdtrain {name}` | {_cell(helps[name])} |" for name in parsers]
    lines += ["", "`python -m svdtrain` is the same command line (what `torchrun -m svdtrain` runs).", ""]
    known = {a.option_strings[-1]: a.help for a in parsers["run"]._actions if a.option_strings and a.help}
    groups: dict[tuple, list[str]] = {}  # commands taking the same arguments share one table
    for name, sub in parsers.items():
        takes_options = any(a.dest.startswith("field_") for a in sub._actions)
        own = [a for a in sub._actions if not a.dest.startswith("field_") and "--help" not in a.option_strings
               and not (takes_options and set(a.option_strings) & _CONFIG_FLAGS)]  # fmt: skip
        rows = tuple((_argument(a), _cell((a.help or known.get(a.option_strings[-1] if a.option_strings else "", ""))
                                          .replace("%%", "%"))) for a in own)  # fmt: skip
        groups.setdefault((takes_options, rows), []).append(name)
    for (takes_options, rows), names in groups.items():
        lines += [f"### {', '.join(f'`svdtrain {name}`' for name in names)}", ""]
        if len(names) == 1:
            lines += [_sentence(helps[names[0]]), ""]
        if takes_options:
            lines += ["Takes `--out DIR`, `--preset NAME`, `--config FILE` and every [config option](#options).", ""]
        if rows:
            lines += ["| argument | what it does |", "| --- | --- |", *(f"| {a} | {h} |" for a, h in rows), ""]
    return lines


def _sentence(text: str) -> str:
    text = _cell(text)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _argument(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()} ...`" if action.nargs == "+" else f"`{action.dest.upper()}`"
    flag = action.option_strings[-1]
    if isinstance(action, argparse._StoreTrueAction):
        return f"`{flag}`"
    return f"`{flag} {action.metavar or action.dest.upper()}`"


def _sources() -> list[str]:
    return [
        "## Where values come from",
        "",
        "Defaults < preset (`--preset NAME`) < config file (`--config FILE`) < flags, and nothing else. "
        "A recipe's values take the place of the source that names it. A config file holds sections "
        "(`svd_train: {epochs: 10}`) or flags at the top (`svd_epochs: 10`); a flag `--svd-epochs 10` "
        "is the same option. List options take comma-separated values on the command line (`--lr-milestones 81,122`).",
        "",
    ]


def _options() -> list[str]:
    lines = ["## Options", ""]
    groups: dict[str, list[tuple[str, Option]]] = {"": []}
    groups.update({name: [] for name in SECTIONS})
    for flag, option in OPTIONS.items():
        groups[option.section].append((flag, option))
    recipes = {name: recipe_values(name) for name in RECIPES}
    for section, options in groups.items():
        if section:
            title, _, what = SECTIONS[section].__doc__.strip().partition(": ")
            lines += [f"### {title}", "", _sentence(what), ""]
        else:
            lines += ["### model", "", "Top-level keys: which model, and what it learns.", ""]
        lines += ["| flag | key | type | default | what it sets |", "| --- | --- | --- | --- | --- |"]
        for flag, option in options:
            key = f"{section}.{option.name}" if section else option.name
            default = _code(shown_value(option.default))
            set_by = [f"{name}: {_code(shown_value(values[flag]))}" for name, values in recipes.items() if flag in values]
            if set_by:
                default += f" ({'; '.join(set_by)})"
            lines.append(f"| `--{flag.replace('_', '-')}` | `{key}` | {_type(option)} | {default} | "
                         f"{_cell(option.help)} |")
        lines.append("")
    return lines


def _type(option: Option) -> str:
    return _cell(_type_text(typing.get_type_hints(option.owner, include_extras=True)[option.name]))


def _type_text(hint: Any) -> str:
    """A declared type in words: ``Literal`` choices, bounds from ``Field``, list items."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        base, *extras = args
        if any(isinstance(e, AfterValidator) and e.func is above_one_or_zero for e in extras):
            return "0 (none) or a number > 1"
        text = _type_text(base)
        for extra in extras:
            for bound in getattr(extra, "metadata", []) if isinstance(extra, FieldInfo) else []:
                if hasattr(bound, "gt"):
                    text += f" > {bound.gt:g}"
                elif hasattr(bound, "ge"):
                    text += f" ≥ {bound.ge:g}"
        return text
    if origin is Literal:
        return "one of " + ", ".join(f"`{choice}`" for choice in args)
    if origin is list:
        return f"list of ({_type_text(args[0])})"
    return {bool: "bool", int: "int", float: "number", str: "text"}.get(hint, str(hint))


def _recipes() -> list[str]:
    lines = ["## Recipes", "", "`--recipe NAME` (or `recipe: NAME` in a preset or config file) sets these values as "
             "a base layer where that source stands: a value set explicitly there or later overrides it (config.json "
             "records each override), and a later source naming another recipe replaces it whole. "
             "`--print-config` shows each value and its source.", "",
             "| recipe | sets | what it is |", "| --- | --- | --- |"]  # fmt: skip
    for name in RECIPES:
        values = recipe_values(name)
        sets = ", ".join(f"`--{flag.replace('_', '-')} {shown_value(value)}`" for flag, value in values.items()) or "nothing"
        lines.append(f"| `{name}` | {sets} | {_cell(recipe_summary(name))} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svdtrain.cli.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", nargs="?", const=str(PAGE), metavar="PATH",
                        help=f"write the page (default {PAGE}) instead of printing it")
    args = parser.parse_args(argv)
    text = config_reference()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
