"""``svdtrain probe``: measure what the activation-aware cut to a run's MACs target costs the
starting model, and recommend a recipe with the evidence behind it and its limits."""

from __future__ import annotations

import argparse

from svdtrain.cli.options import add_config_options, config_from
from svdtrain.pipeline.cut_probe import EVIDENCE, LIMITS, PROBE_BATCHES, probe_cut, recommendation
from svdtrain.train.runtime import denormals_flushed, resolve_device


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help="measure the cut to a MACs target before training, and "
                                   "recommend a recipe (budget or truncation) with its evidence")  # fmt: skip
    add_config_options(parser, out_required=False)
    parser.add_argument("--batches", type=int, default=PROBE_BATCHES, help="training batches to score on "
                        f"(default: {PROBE_BATCHES})")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.batches < 1:
        raise ValueError(f"--batches must be >= 1, got {args.batches}")
    config = config_from(args)
    with denormals_flushed(config.run.flush_denormals):
        probe = probe_cut(config, resolve_device(config.run.device), args.batches)
    print(f"starting model: {probe.dense:.4f} on {probe.images:,} training images (unaugmented)")
    print(f"cut to {config.prune.target_reduction:g}x fewer MACs ({config.start.scheme}-wise, activation-aware, "
          f"BatchNorm re-estimated): {probe.cut:.4f}, keeping {probe.kept:.1%} of it")  # fmt: skip
    print(f"recommendation: {recommendation(probe)}")
    print("evidence (share kept -> SVD training's margin over truncation, test points, same MACs and epochs):")
    print("\n".join(f"  {kept:.1%} -> {margin:+.2f}  {label}" for label, kept, margin in EVIDENCE))
    print(f"limits: {LIMITS}")
    return 0
