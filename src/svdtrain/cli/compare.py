"""``svdtrain compare``: which method wins on your model, measured: SVD training (paper and
budget recipes) against truncation and an epoch-matched dense control, at one MACs target and
the same total epochs (pipeline/compare.py)."""

from __future__ import annotations

import argparse

from svdtrain.cli.options import add_config_options, overrides_from
from svdtrain.pipeline.compare import METHODS, run_compare
from svdtrain.pipeline.run_folder import RunFolder

MAX_SEEDS = 100


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(item) for item in _items(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or len(seeds) > MAX_SEEDS or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_SEEDS} seeds >= 0, got {text!r}")
    return list(dict.fromkeys(seeds))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="SVD training against truncation and dense on your config, at "
                                   "one MACs target and equal epochs: one table and one plot")  # fmt: skip
    add_config_options(parser)
    parser.add_argument("--methods", type=_items, default=["paper", "budget", "truncation", "truncation-plain"],
                        help=f"comma-separated, from {', '.join(METHODS)} (default: all but dense)")  # fmt: skip
    parser.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated seeds (default: 0)")
    parser.add_argument("--budget-cuts", type=int, default=0, help="the budget method's gradual cuts, one after "
                        "each of its first N SVD-training epochs (0: one after every epoch)")  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue an interrupted comparison in --out")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.budget_cuts < 0:
        raise ValueError(f"--budget-cuts must be >= 0, got {args.budget_cuts}")
    folder = RunFolder(args.out)
    if folder.path.exists() and not folder.path.is_dir():
        raise ValueError(f"--out {folder.path} exists and is not a directory")
    if folder.path.is_dir() and any(folder.path.iterdir()) and not args.resume:
        raise ValueError(f"{folder.path} is not empty; pass --resume to continue a comparison there, or choose "
                         "another --out")  # fmt: skip
    with folder.locked():
        result = run_compare(args.preset, args.config, overrides_from(args), args.methods, args.seeds, folder.path,
                             budget_cuts=args.budget_cuts)  # fmt: skip
    print()
    print((folder.path / "compare.md").read_text().rstrip())
    print(f"\nwritten to {folder.path / 'compare.md'}, compare.json and compare.png")
    return 0 if result["rows"] else 1
