"""``svdtrain run`` and one subcommand per stage (start, svd-train, prune, finetune, export, report)."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from svdtrain.bounds import read_json
from svdtrain.cli.options import add_config_options, config_from, config_table
from svdtrain.cli.output import format_report
from svdtrain.io import atomic_write_json
from svdtrain.train.distributed import Distributed
from svdtrain.pipeline.config import RunConfig, config_record, saved_config
from svdtrain.pipeline.experiment import STAGES, Experiment
from svdtrain.pipeline.run_data import start_checkpoint
from svdtrain.pipeline.run_folder import RunFolder

STAGE_HELP = {
    "start": "decompose a pretrained model (init svd) or train the SVD form from scratch (init random)",
    "svd_train": "train with orthogonality + sparsity regularizers",
    "prune": "drop small singular values: to a MACs or speed target, by threshold, or by energy",
    "finetune": "train the pruned model with the orthogonality term only (optionally distilled)",
    "export": "write the compact model: weights + spec.json, TorchScript, torch.export, ONNX",
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


def _show(report: dict, folder: RunFolder) -> None:
    print()
    print(format_report(report))
    print(f"\nreport written to {folder.report}")


def _held(folder: RunFolder, dist: Distributed) -> ExitStack:
    """The folder's lock, held by rank 0 (the process that writes); its refusal, a folder in use,
    stops every process with the same message instead of leaving the others at a barrier."""
    held = ExitStack()
    refused = None
    if dist.is_main:
        try:
            held.enter_context(folder.locked())
        except ValueError as error:
            refused = str(error)
    refused = dist.broadcast(refused)
    if refused is not None:
        held.close()
        raise ValueError(refused)
    return held


def _check_checkpoint(config: RunConfig) -> None:
    """A starting checkpoint that is nowhere, found by every process before any of them waits
    for another (under torchrun one process failing alone would leave the rest at a barrier)."""
    if config.start.init == "svd" and config.start.checkpoint:
        start_checkpoint(config)  # raises the one-line error naming the places tried


def run_all(args: argparse.Namespace) -> int:
    """All stages. Under torchrun every process checks the folder and the config alike (so a
    mistake stops them all with the same message); rank 0 alone prepares and writes."""
    config = config_from(args, continuing=args.resume)
    if args.print_config:
        print(config_table(config))
        return 0
    dist = Distributed.from_environment()
    _check_checkpoint(config)
    folder = RunFolder(args.out)
    folder.prepare(overwrite=args.overwrite, resume=args.resume, check_only=True)
    saved = saved_config(folder) if args.resume else None
    if saved is not None and saved != config:
        # Options no source sets keep the run's values (config_from), so older runs still resume.
        before, now = saved.flat(), config.flat()
        changed = sorted(k for k in now if before[k] != now[k])
        raise ValueError(f"--resume with a different config than the run's (changed: {', '.join(changed)})")
    with _held(folder, dist):
        dist.barrier()
        if dist.is_main:
            folder.prepare(overwrite=args.overwrite, resume=args.resume)
            atomic_write_json(folder.config, config_record(config))
        dist.barrier()
        try:
            Experiment(config, folder.path, resume=args.resume).run()
        except BaseException:
            # Not resuming, the config is this command's (prepare cleared the folder or found it empty);
            # a run that stopped before any other file (a wrong data path) leaves the folder free.
            if dist.is_main and not args.resume and folder.written_files() == [folder.config]:
                folder.config.unlink()
            raise
    if dist.is_main:
        _show(read_json(folder.report, what="report"), folder)
    return 0


def run_stage(args: argparse.Namespace) -> int:
    dist = Distributed.from_environment()
    folder = RunFolder(args.out)
    if args.stage != "start" and not folder.written_files():  # before the config: its errors would mislead
        raise ValueError(f"{folder.path} holds no run: run 'svdtrain start' or 'svdtrain run' there first")
    config = config_from(args, continuing=True)
    if args.print_config:
        print(config_table(config))
        return 0
    if args.stage == "start":
        _check_checkpoint(config)
    with _held(folder, dist):
        dist.barrier()
        if dist.is_main:
            folder.path.mkdir(parents=True, exist_ok=True)
            if not folder.config.exists():
                atomic_write_json(folder.config, config_record(config))
        dist.barrier()
        result = Experiment(config, folder.path, resume=args.resume).run_stage(args.stage)
    if args.stage == "report" and dist.is_main:
        _show(result, folder)
    return 0
