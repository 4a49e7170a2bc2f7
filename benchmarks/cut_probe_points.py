"""Where `svdtrain probe` draws its recommendation line: the cut probe (svdtrain.pipeline.cut_probe)
on the start of every full-data comparison of svd_vs_truncation.py, beside who won it.

For each result file: the probe's kept fraction on training images (what the probe reports) and the
same cut scored on the test split (what the comparison's "pruned" column saw, for reference),
then the budget recipe's margin over the better truncation (mean over the file's seeds).

    python benchmarks/cut_probe_points.py --json benchmarks/results/cut_probe_points.json \\
        benchmarks/results/issue10_full_channel3x.json,benchmarks/results/issue10_full_channel3x_seed1.json ...

Each argument is one comparison point: its seeds' result files, comma-separated.
    python benchmarks/cut_probe_points.py --quick   # an untrained digits CNN: the plumbing, seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from svdtrain.models import build_model
from svdtrain.pipeline.config import resolve_config
from svdtrain.pipeline.cut_probe import probe_cut

from _results import write_results  # noqa: E402  (beside this script)

TRUNCATIONS = ("truncated", "truncated-whiten")


def margin(rows: list[dict], reduction: float) -> tuple[float, int]:
    """The budget recipe's mean final metric minus the better truncation's, and the seeds."""
    means = {}
    for method in ("all", *TRUNCATIONS):
        values = [r["final"] for r in rows if r["method"] == method and r["target_reduction"] == reduction]
        if values:
            means[method] = statistics.mean(values)
    seeds = len({r["seed"] for r in rows if r["method"] == "all"})
    return means["all"] - max(means[m] for m in TRUNCATIONS if m in means), seeds


def point(paths: list[str]) -> dict:
    results = [json.loads(Path(path).read_text()) for path in paths]
    first = results[0]
    rows = [row for result in results for row in result["rows"]]
    reduction = rows[0]["target_reduction"]
    # the comparison's own flags (its epochs included), as `svdtrain probe` resolves them: the probe
    # cuts activation-aware whatever the recipe, so none is named
    overrides = {**first["base_overrides"], "target_reduction": reduction}
    config = resolve_config(first["preset"], overrides=overrides)
    probe = probe_cut(config)
    test = probe_cut(config, split="test").kept
    won, seeds = margin(rows, reduction)
    return {"preset": first["preset"], "target_reduction": reduction, "kept_train": probe.kept,
            "dense_train": probe.dense, "cut_train": probe.cut, "kept_test": test, "budget_margin": won,
            "seeds": seeds, "files": paths}  # fmt: skip


def quick_point(folder: Path) -> str:
    """A made-up comparison on the smoke preset, from an untrained digits CNN: plumbing only."""
    checkpoint = folder / "dense.pt"
    torch.save(build_model("digits_cnn", 10).state_dict(), checkpoint)
    rows = [{"method": method, "target_reduction": 1.5, "seed": 0, "final": final}
            for method, final in (("all", 0.9), ("truncated", 0.8))]  # fmt: skip
    base = {"checkpoint": str(checkpoint), "init": "svd", "start_epochs": 0, "train_limit": 400, "test_limit": 300}
    path = folder / "comparison.json"
    path.write_text(json.dumps({"preset": "smoke", "base_overrides": base, "rows": rows}))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("points", nargs="*", help="one comparison point each: its result files, comma-separated")
    parser.add_argument("--quick", action="store_true", help="a made-up point on digits, for the test suite")
    parser.add_argument("--json", help="write the points here")
    args = parser.parse_args()
    if args.quick:
        args.points = [quick_point(Path(tempfile.mkdtemp()))]
    if not args.points:
        parser.error("name at least one comparison point (its result files), or --quick")
    points = []
    print(f"{'preset':<28} {'target':>6} {'kept (train)':>12} {'kept (test)':>11} {'budget - trunc':>14} seeds")
    for group in args.points:
        p = point(group.split(","))
        points.append(p)
        print(f"{p['preset']:<28} {p['target_reduction']:>5g}x {p['kept_train']:>12.1%} {p['kept_test']:>11.1%} "
              f"{p['budget_margin'] * 100:>+13.2f}  {p['seeds']}", flush=True)  # fmt: skip
    if args.json:
        write_results(args.json, "cut_probe_points", {"points": points})


if __name__ == "__main__":
    main()
