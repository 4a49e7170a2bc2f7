"""Config options shared by the pipeline subcommands: --preset, --config, a flag per field."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from svdtrain.train.config import FIELDS, RunConfig, merge, resolve_config
from svdtrain.train.experiment import STAGES
from svdtrain.train.export import EXPORT_FILES


def _number(text: str) -> int | float:
    return int(text) if text.strip().lstrip("-").isdigit() else float(text)


def parse_value(text: str, default: Any) -> Any:
    """Parse a flag's text by its field's type; a bad value is an argparse error, one line."""
    try:
        if isinstance(default, list):
            return [_number(v) for v in text.split(",") if v.strip()]
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        return type(default)(text)
    except ValueError:
        kind = "comma-separated numbers" if isinstance(default, list) else type(default).__name__
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None


def add_config_options(parser: argparse.ArgumentParser, *, out_required: bool = True) -> None:
    parser.add_argument("--out", type=Path, required=out_required, help="run folder")
    parser.add_argument("--preset", help="a named preset (see 'svdtrain presets')")
    parser.add_argument("--config", help="a YAML config file; its keys are RunConfig fields")
    fields = parser.add_argument_group("config fields (override preset and file)")
    for name, field in FIELDS.items():
        if name == "version":
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        fields.add_argument(
            "--" + name.replace("_", "-"), dest=f"field_{name}", default=argparse.SUPPRESS, metavar="V",
            type=lambda text, d=default: parse_value(text, d), help=f"default {default!r}",
        )  # fmt: skip


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {key.removeprefix("field_"): value for key, value in vars(args).items() if key.startswith("field_")}


def config_from(args: argparse.Namespace) -> RunConfig:
    """Preset/file/flags; for a lone stage with none given, the run folder's config.json."""
    saved = args.out / "config.json" if args.out else None
    if not (args.preset or args.config) and saved is not None and saved.exists():
        values = merge({}, json.loads(saved.read_text()), str(saved))
        return RunConfig(**merge(values, overrides_from(args), "the command line"))
    return resolve_config(args.preset, args.config, overrides_from(args))


# Everything svdtrain writes into a run folder; --overwrite deletes these and nothing else.
RUN_FILES = ("report.json", "config.json", "sweep.json", "adapted_dense.pt", "spectra.png", "ranks.png",
             "accuracy_vs_macs.png", "loss_vs_macs.png", *(f"{s}.pt" for s in STAGES), *(f"{s}.ckpt.pt" for s in STAGES),
             *(f"metrics/{s}.csv" for s in STAGES), *(f"export/{name}" for name in EXPORT_FILES))  # fmt: skip


def _run_files(out: Path) -> list[Path]:
    return [out / name for name in RUN_FILES if (out / name).is_file()]


def _clear_run(out: Path) -> None:
    for sub in out.glob("w*_e*"):  # sweep sub-runs
        if (sub / "config.json").is_file():
            _clear_run(sub)
    for path in _run_files(out):
        path.unlink()
    for folder in (out / "metrics", out / "export", *out.glob("w*_e*")):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def prepare_run_folder(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Guard a run folder: a finished run needs --overwrite, an unfinished one --resume or
    --overwrite; --overwrite deletes only the files svdtrain wrote there."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    finished = [name for name in ("report.json", "sweep.json") if (out / name).is_file()]
    if finished and not overwrite:
        raise ValueError(f"{out} already holds a finished run ({finished[0]}); pass --overwrite or choose another --out")
    started = out.is_dir() and (_run_files(out) or any((sub / "config.json").is_file() for sub in out.glob("w*_e*")))
    if started and not finished and not (resume or overwrite):
        raise ValueError(f"{out} holds an unfinished run; pass --resume to continue it or --overwrite to start over")
    if overwrite and out.is_dir():
        _clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
