"""Config options shared by the pipeline subcommands: --preset, --config, a flag per field."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from svdtrain.train.config import FIELDS, RunConfig, merge, resolve_config

def _parse_value(text: str, default: Any) -> Any:
    if isinstance(default, list):
        return [float(v) if "." in v or "e" in v.lower() else int(v) for v in text.split(",") if v.strip()]
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    return type(default)(text)


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
            type=lambda text, d=default: _parse_value(text, d), help=f"default {default!r}",
        )  # fmt: skip


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {key.removeprefix("field_"): value for key, value in vars(args).items() if key.startswith("field_")}


def config_from(args: argparse.Namespace) -> RunConfig:
    """Preset/file/flags; for a lone stage with none given, the run folder's config.json."""
    saved = args.out / "config.json" if args.out else None
    if not (args.preset or args.config) and saved is not None and saved.exists():
        values = merge({}, {k: v for k, v in json.loads(saved.read_text()).items()}, str(saved))
        return RunConfig(**merge(values, overrides_from(args), "the command line"))
    return resolve_config(args.preset, args.config, overrides_from(args))


RUN_ARTIFACTS = ("report.json", "config.json", "sweep.json", "*.pt", "*.png", "metrics", "export")


def _remove_artifacts(out: Path) -> None:
    """Delete what svdtrain writes in a run folder (and sweep sub-runs), nothing else."""
    for pattern in RUN_ARTIFACTS:
        for item in out.glob(pattern):
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for sub in out.iterdir():
        if sub.is_dir() and (sub / "config.json").exists():
            _remove_artifacts(sub)
            if not any(sub.iterdir()):
                sub.rmdir()


def prepare_run_folder(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse a finished run unless --overwrite (which clears it); keep an unfinished one for --resume."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    finished = [name for name in ("report.json", "sweep.json") if (out / name).exists()]
    if finished and not overwrite:
        raise ValueError(f"{out} already holds a finished run ({finished[0]}); pass --overwrite or choose another --out")
    if out.exists() and (finished or not resume):
        _remove_artifacts(out)
    out.mkdir(parents=True, exist_ok=True)
