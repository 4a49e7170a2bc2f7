"""SVD training against plain and activation-aware truncation at the same budget (issue 10).

Every method starts from the same model (the preset's start stage: a pretrained checkpoint
decomposed, or the smoke preset's own start), trains the same total number of epochs, ends
at the same MACs target (greedy ranks) and fine-tunes the same way (the preset's distillation
from the dense model, BatchNorm re-estimated after every cut):

  paper             the preset's recipe: SVD-train (orthogonality + sparsity), prune once, fine-tune
  truncated         no SVD training: truncated SVD of the starting model, fine-tuned for all epochs
  truncated-whiten  the same, truncated activation-aware (SVD-LLM whitening on training batches)
  truncated-scale   the same with ASVD's activation scaling
  <levers>          the paper's recipe with one change or several (LEVERS below); all-no-X
                    is the budget recipe's five levers but X (the leave-one-out ablation);
                    runlr: one learning-rate schedule over SVD training and fine-tuning
  torch-pruning     structured filter pruning (Torch-Pruning, L1 magnitude) of the dense
                    model to the same MACs, fine-tuned for all epochs with the same distillation

    python benchmarks/svd_vs_truncation.py --preset cpu-resnet20-channel-hoyer \\
        --checkpoint runs/cpu/adapt/adapted_dense.pt --train-limit 10000 --reductions 3 \\
        --methods paper,truncated,truncated-whiten,gradual --out runs/issue10/screen --json screen.json
    python benchmarks/svd_vs_truncation.py --quick      # digits, seconds

Runs resume: started again with the same --out, finished runs are read back, not redone.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
from pathlib import Path

import svdtrain
from svdtrain.io import atomic_write_json
from svdtrain.pipeline.config import resolve_config
from svdtrain.pipeline.engine import cut_batches
from svdtrain.train.distill import Distillation
from svdtrain.train.loop import recalibrate_batchnorm
from svdtrain.train.regularization import Regularization

from _pipeline_runs import run_preset  # noqa: E402  (beside this script)
from _results import write_results  # noqa: E402  (beside this script)

TRUNCATION = {"truncated": {}, "truncated-whiten": {"calibration": "whiten"},
              "truncated-scale": {"calibration": "scale"}}  # fmt: skip
# The five levers of the budget recipe, each alone on the paper's recipe (values are config flags).
BUDGET_LEVERS = {
    "gradual": {"gradual": True},
    "macs": {"macs_weighted": True},
    "slr10": {"s_lr_scale": 10.0},
    "distill": {"distill": True},
    "whiten": {"calibration": "whiten"},
}
ALL_LEVERS = {flag: value for lever in BUDGET_LEVERS.values() for flag, value in lever.items()}
# The paper's recipe with one change or several: all levers, all but one (the ablation), pairs.
LEVERS = {
    "paper": {},
    **BUDGET_LEVERS,
    "gradual-whiten": {"gradual": True, "calibration": "whiten"},
    "gradual-distill": {"gradual": True, "distill": True},
    "prox-l1": {"sparsity_kind": "l1", "proximal": True, "sparsity_weight": 1.0},
    "tail": {"budget_tail": True, "proximal": True, "sparsity_weight": 2.0},
    "tail-grad": {"budget_tail": True, "sparsity_weight": 1.0},
    "tail-gradual": {"budget_tail": True, "proximal": True, "sparsity_weight": 2.0, "gradual": True},
    "runlr": {"lr_schedule": "run"},
    "all": ALL_LEVERS,
    "all-runlr": {**ALL_LEVERS, "lr_schedule": "run"},
    **{f"all-no-{name}": {flag: value for flag, value in ALL_LEVERS.items() if flag not in lever}
       for name, lever in BUDGET_LEVERS.items()},  # fmt: skip
}
METHODS = (*TRUNCATION, *LEVERS, "torch-pruning")


def method_overrides(method: str, config_epochs: tuple[int, int]) -> dict:
    """Flags of one method: the paper recipe named (the default; named, so each run's config says
    it), then the method's changes; a truncation's fine-tuning gets the SVD-training epochs too."""
    svd_epochs, finetune_epochs = config_epochs
    if method in TRUNCATION:
        return {"recipe": "paper", "svd_epochs": 0, "finetune_epochs": svd_epochs + finetune_epochs,
                **TRUNCATION[method]}  # fmt: skip
    return {"recipe": "paper", **LEVERS[method]}


def torch_pruning_run(preset: str, out: Path, overrides: dict, reduction: float, quiet: bool) -> dict:
    """Filter-prune the start stage's dense model to the MACs target, then fine-tune it for all
    epochs with the pipeline's own trainer and distillation. Returns {accuracy, macs, pruned}."""
    from compression_quality import filter_pruned  # noqa: E402  (beside this script)

    result_file = out / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    experiment = run_preset(preset, out, overrides, stages=("start",), quiet=quiet)
    c = experiment.config
    dense = experiment.dense_baseline().cpu()
    example = experiment.data.example.cpu()
    budget = experiment.stage_record("start")["baseline"]["macs"] / reduction
    low, high = 0.0, 0.9  # the smallest channel ratio that meets the budget
    if svdtrain.count_macs(filter_pruned(dense, example, high), example) > budget:
        raise ValueError(f"Torch-Pruning cannot reach {reduction}x here")
    for _ in range(12):
        middle = (low + high) / 2
        fits = svdtrain.count_macs(filter_pruned(dense, example, middle), example) <= budget
        low, high = (low, middle) if fits else (middle, high)
    model = filter_pruned(dense, example, high).to(experiment.device)
    recalibrate_batchnorm(model, cut_batches(c, experiment.data, 0)[1], c.prune.bn_recalibration_batches,
                          experiment.device)  # a filter-pruned model: no factors, so not the engine
    pruned = experiment.evaluation(model)[experiment.task.metric]
    f = c.finetune
    teacher = copy.deepcopy(dense).to(experiment.device)
    distillation = Distillation(teacher, f.distill_weight, f.distill_temperature) if f.distill_weight else None
    epochs = c.svd_train.epochs + c.finetune.epochs
    experiment.trainer.fit("finetune", model, epochs, Regularization(), lr=f.lr or c.optim.lr,
                           distillation=distillation)  # fmt: skip
    result = {experiment.task.metric: experiment.evaluation(model)[experiment.task.metric],
              "macs": svdtrain.count_macs(model.cpu(), example), "pruned": pruned}  # fmt: skip
    atomic_write_json(result_file, result)
    return result


def one_run(preset: str, method: str, out: Path, overrides: dict, reduction: float, quiet: bool) -> dict:
    config = resolve_config(preset, overrides=overrides)
    epochs = (config.svd_train.epochs, config.finetune.epochs)
    overrides = {**overrides, "target_reduction": reduction}
    if method == "torch-pruning":
        paper = {**overrides, "recipe": "paper"}  # distilled as the preset says, as every other method
        result = torch_pruning_run(preset, out, paper, reduction, quiet)
        metric = "loss" if config.task == "language_modeling" else "accuracy"
        return {"final": result[metric], "pruned": result["pruned"], "macs": result["macs"], "metric": metric}
    run_preset(preset, out, {**overrides, **method_overrides(method, epochs)}, quiet=quiet)
    report = json.loads((out / "report.json").read_text())
    metric = report["metric"]
    return {"final": report["compact"][metric], "pruned": report["stages"]["prune"][metric],
            "macs": report["compact"]["macs"], "baseline": report["baseline"][metric], "metric": metric}


def plot(rows: list[dict], path: str) -> None:
    """Final metric against MACs, one marker per method, mean over seeds with each seed shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for method in sorted({row["method"] for row in rows}):  # sorted: a method keeps its colour across plots
        mine = [row for row in rows if row["method"] == method]
        points = {}
        for row in mine:
            points.setdefault(row["target_reduction"], []).append(row)
        xs = [statistics.mean(r["macs"] for r in group) / 1e6 for group in points.values()]
        ys = [statistics.mean(r["final"] for r in group) for group in points.values()]
        line = axes.plot(xs, ys, marker="o", label=method)[0]
        axes.scatter([r["macs"] / 1e6 for r in mine], [r["final"] for r in mine], s=10, color=line.get_color(),
                     alpha=0.4)  # fmt: skip
    axes.set_xlabel("MACs (millions)")
    axes.set_ylabel(rows[0]["metric"] if rows else "")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def replot(paths: list[str], plot_path: str, parser: argparse.ArgumentParser) -> None:
    """One plot of several result files of one protocol (other seeds or targets, same preset and data)."""
    try:
        results = [json.loads(Path(path).read_text()) for path in paths]
        protocols = {json.dumps([r["preset"], r["base_overrides"]], sort_keys=True) for r in results}
    except (OSError, ValueError, KeyError, TypeError) as error:
        parser.error(f"--replot: cannot read a svd_vs_truncation result: {error}")
    if len(protocols) > 1:
        parser.error(f"--replot: these results differ in preset or training data: {'; '.join(sorted(protocols))}")
    plot([row for result in results for row in result["rows"]], plot_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-resnet20-channel-hoyer")
    parser.add_argument("--checkpoint", help="the dense model every method starts from (overrides the preset's)")
    parser.add_argument("--train-limit", type=int, default=0, help="training images (0: all)")
    parser.add_argument("--svd-epochs", type=int, help="SVD-training epochs (default: the preset's)")
    parser.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs (default: the preset's)")
    parser.add_argument("--distill-weight", type=float,
                        help="distillation weight of every method's fine-tuning (default: the preset's)")  # fmt: skip
    parser.add_argument("--reductions", default="3", help="MACs reduction targets, e.g. 2,3")
    parser.add_argument("--seeds", default="0", help="e.g. 0,1")
    parser.add_argument("--methods", default="paper,truncated,truncated-whiten", help=f"from: {', '.join(METHODS)}")
    parser.add_argument("--out", default="runs/svd_vs_truncation")
    parser.add_argument("--quick", action="store_true", help="the smoke preset on digits, for the test suite")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write the metric-vs-MACs plot here (PNG)")
    parser.add_argument("--replot", nargs="+", metavar="JSON",
                        help="no runs: plot the rows of earlier --json results together into --plot")  # fmt: skip
    args = parser.parse_args()
    if args.replot:
        if not args.plot:
            parser.error("--replot needs --plot PATH")
        replot(args.replot, args.plot, parser)
        return
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    base: dict = {}
    if args.quick:
        args.preset, args.out = "smoke", tempfile.mkdtemp()
        args.plot = args.plot or str(Path(args.out) / "plot.png")
        base = {"train_limit": 400, "test_limit": 300, "start_epochs": 1, "svd_epochs": 1, "finetune_epochs": 1}
        methods = ["paper", "truncated", "truncated-whiten", "gradual", "torch-pruning"]
        args.reductions = "1.5"
    if args.checkpoint:
        base["checkpoint"] = args.checkpoint
    if args.train_limit:
        base["train_limit"] = args.train_limit
    for flag in ("svd_epochs", "finetune_epochs", "distill_weight"):
        if getattr(args, flag) is not None:
            base[flag] = getattr(args, flag)
    rows = []
    print(f"{'method':<18} {'target':>6} {'seed':>4} {'pruned':>8} {'final':>8} {'MACs':>12}", flush=True)
    for reduction in (float(r) for r in args.reductions.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            for method in methods:
                out = Path(args.out) / f"{method}-{reduction:g}x-s{seed}"
                result = one_run(args.preset, method, out, {**base, "seed": seed}, reduction, quiet=args.quick)
                rows.append({"method": method, "target_reduction": reduction, "seed": seed, **result, "run": str(out)})
                print(f"{method:<18} {reduction:>5g}x {seed:>4} {result['pruned']:>8.4f} {result['final']:>8.4f} "
                      f"{result['macs']:>12,}", flush=True)  # fmt: skip
    summary = {}
    for row in rows:
        summary.setdefault(f"{row['method']} {row['target_reduction']:g}x", []).append(row["final"])
    print("\nmean over seeds:")
    for key, values in summary.items():
        print(f"  {key:<26} {statistics.mean(values):.4f}  ({len(values)} seed{'s' * (len(values) > 1)})")
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        write_results(args.json, "svd_vs_truncation", {
            "preset": args.preset, "base_overrides": base, "rows": rows,
            "mean": {key: statistics.mean(values) for key, values in summary.items()},
        })  # fmt: skip


if __name__ == "__main__":
    main()
