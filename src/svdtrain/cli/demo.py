"""``svdtrain demo``: the whole method on scikit-learn's digits, in a minute or two on CPU."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from svdtrain.cli.options import flag_text
from svdtrain.cli.output import format_report
from svdtrain.io import atomic_write_json
from svdtrain.pipeline.demo import DemoConfig, run_demo
from svdtrain.pipeline.run_folder import RunFolder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="train, SVD-train, prune and compact a CNN on the digits data")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for report.json")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    defaults = DemoConfig()
    for field in dataclasses.fields(DemoConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        parser.add_argument(flag, type=lambda text, d=default: flag_text(text, d), default=default, metavar="V",
                            help=f"{field.metadata['help']} (default: {default})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = DemoConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)})
    folder = RunFolder(args.out)
    folder.prepare(overwrite=args.overwrite, resume=False)
    report = run_demo(config)
    atomic_write_json(folder.report, report)
    print()
    print(format_report(report))
    print(f"\nreport written to {folder.report}")
    return 0
