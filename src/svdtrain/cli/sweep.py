"""``svdtrain sweep``: several sparsity weights x energy thresholds, and the metric-vs-MACs plot."""

from __future__ import annotations

import argparse

from svdtrain.cli.options import add_config_options, config_from
from svdtrain.pipeline.run_folder import RunFolder
from svdtrain.pipeline.sweep import run_sweep


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sweep", help="run several sparsity weights / energies; plot accuracy vs MACs")
    add_config_options(parser)
    parser.add_argument("--sparsity-weights", type=_floats, required=True, help="e.g. 0.01,0.03,0.1")
    parser.add_argument("--energies", type=_floats, required=True, help="e.g. 0.001,0.01")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    if any(w < 0 for w in args.sparsity_weights):
        raise ValueError(f"sparsity weights must be >= 0, got {args.sparsity_weights}")
    if any(not 0 <= e < 1 for e in args.energies):
        raise ValueError(f"energies must be in [0, 1), got {args.energies}")
    if config.prune.target_reduction or config.prune.target_speedup:
        raise ValueError("a sweep varies the energy, which a target would override: set --target-reduction 0 "
                         "and --target-speedup 0")
    folder = RunFolder(args.out)
    with folder.locked():
        folder.prepare(overwrite=args.overwrite, resume=args.resume)
        result = run_sweep(config, args.out, args.sparsity_weights, args.energies, resume=args.resume)
    metric = result["metric"]
    print(f"{'run':<22} {metric:>9} {'MACs':>12}")
    for point in result["points"]:
        print(f"{point['label']:<22} {point[metric]:>9.4f} {point['macs']:>12,}")
    print(f"\nsweep written to {folder.sweep}")
    return 0
