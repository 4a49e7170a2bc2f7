"""``svdtrain run`` and one subcommand per stage (start, svd-train, prune, finetune, export, report)."""

from __future__ import annotations

import argparse
import json

from svdtrain.cli.options import add_config_options, config_from, prepare_run_folder
from svdtrain.cli.output import format_report
from svdtrain.io import atomic_write_json
from svdtrain.train.config import RunConfig, merge
from svdtrain.train.experiment import STAGES, Experiment

STAGE_HELP = {
    "start": "decompose a pretrained model (init svd) or train the SVD form from scratch (init random)",
    "svd_train": "train with orthogonality + sparsity regularizers",
    "prune": "drop small singular values by energy (or threshold)",
    "finetune": "train the pruned model with the orthogonality term only",
    "export": "write the compact model: weights + spec.json, TorchScript, ONNX",
    "report": "write report.json and plots",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="all stages: start, svd-train, prune, finetune, export, report")
    add_config_options(run)
    run.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    run.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    run.set_defaults(run=run_all)
    for stage in STAGES:
        sub = subparsers.add_parser(stage.replace("_", "-"), help=STAGE_HELP[stage])
        add_config_options(sub)
        sub.add_argument("--resume", action="store_true", help="continue this stage from its last checkpoint")
        sub.set_defaults(run=run_stage, stage=stage)


def _show(report: dict, out) -> None:
    print()
    print(format_report(report))
    print(f"\nreport written to {out / 'report.json'}")


def run_all(args: argparse.Namespace) -> int:
    config = config_from(args)
    prepare_run_folder(args.out, overwrite=args.overwrite, resume=args.resume)
    if args.resume and (args.out / "config.json").exists():
        # Fields added since the run started read as their defaults, so older runs still resume.
        saved_path = args.out / "config.json"
        saved = RunConfig(**merge({}, json.loads(saved_path.read_text()), str(saved_path))).to_dict()
        if saved != config.to_dict():
            current = config.to_dict()
            changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
            raise ValueError(f"--resume with a different config than the run's (changed: {', '.join(changed)})")
    atomic_write_json(args.out / "config.json", config.to_dict())
    experiment = Experiment(config, args.out, resume=args.resume)
    experiment.run()
    _show(json.loads((args.out / "report.json").read_text()), args.out)
    return 0


def run_stage(args: argparse.Namespace) -> int:
    config = config_from(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.out / "config.json").exists():
        atomic_write_json(args.out / "config.json", config.to_dict())
    experiment = Experiment(config, args.out, resume=args.resume)
    result = getattr(experiment, f"run_{args.stage}")()
    if args.stage == "report":
        _show(result, args.out)
    return 0
