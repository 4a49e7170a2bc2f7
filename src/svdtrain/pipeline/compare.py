"""Methods side by side on one config: the same starting model, MACs target and total epochs.

    paper             SVD training, one cut, fine-tuning (the config's svd_epochs + finetune_epochs)
    budget            the budget recipe over the same epochs (its last gradual cut after
                      ``budget_cuts`` SVD-training epochs; 0: the last one)
    truncation        no SVD training: the activation-aware cut, fine-tuned for all the epochs
    truncation-plain  the cut by |s| alone, fine-tuned for all the epochs
    dense             the control: the starting model trained dense for all the epochs

Each method and seed is an ordinary run folder (``<out>/<method>-s<seed>``) that resumes on
its own, so a comparison cut off anywhere continues where it stopped. The result is one table
(``compare.md``, ``compare.json``) and one plot of the test metric and of the energy a cut at
the target would keep, epoch by epoch (``compare.png``).
"""

from __future__ import annotations

import csv
import statistics
import warnings
from pathlib import Path
from typing import Any, Callable

from svdtrain.bounds import read_json
from svdtrain.io import atomic_write_json, atomic_write_text
from svdtrain.pipeline.config import RunConfig, resolve_config, saved_config
from svdtrain.pipeline.experiment import Experiment
from svdtrain.pipeline.run_folder import RunFolder
from svdtrain.surgery import count_macs, count_params
from svdtrain.tasks import task_named
from svdtrain.train.regularization import Regularization

METHODS = ("paper", "budget", "truncation", "truncation-plain", "dense")
TRUNCATIONS = ("truncation", "truncation-plain")
# Set by compare for each run (the method's recipe), so a user's value would never take effect.
OWNED = ("recipe",)
# The epochs a method without SVD training moves into fine-tuning: compare's definition of equal epochs.
SPLIT = ("svd_epochs", "finetune_epochs")


def method_flags(method: str, base: RunConfig, budget_cuts: int = 0) -> dict[str, Any]:
    """The flags ``method`` adds over the user's sources (``base``: their resolved config)."""
    total = base.svd_train.epochs + base.finetune.epochs
    if method == "paper":
        return {"recipe": "paper"}
    if method == "budget":
        return {"recipe": "budget", **({"gradual_cuts": budget_cuts} if budget_cuts else {})}
    if method == "truncation":
        return {"recipe": "truncation", "svd_epochs": 0, "finetune_epochs": total}
    if method == "truncation-plain":
        return {"recipe": "paper", "svd_epochs": 0, "finetune_epochs": total, "calibration": "none"}
    if method == "dense":
        return {"recipe": "paper"}
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def check_methods(methods: list[str]) -> list[str]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; choose from {', '.join(METHODS)}"
                         if unknown else f"name at least one method of {', '.join(METHODS)}")  # fmt: skip
    return list(dict.fromkeys(methods))


def method_config(method: str, preset: str | None, config_file: str | None, flags: dict[str, Any],
                  base: RunConfig, budget_cuts: int = 0) -> RunConfig:  # fmt: skip
    """The config ``method`` runs: the user's sources, then the method's flags (``base``: the
    user's sources resolved alone); an error names the method."""
    own = method_flags(method, base, budget_cuts)
    clash = next((flag for flag in own if flag in flags and flag not in SPLIT and flags[flag] != own[flag]), None)
    if clash is not None:  # one source, two values: never replace the user's in silence
        raise ValueError(f"method {method} sets {clash} {own[clash]!r}, but the command line sets {flags[clash]!r}: "
                         f"drop --{clash.replace('_', '-')} or the method")  # fmt: skip
    try:
        return resolve_config(preset, config_file, {**flags, **own})
    except ValueError as error:
        raise ValueError(f"method {method}: {error}") from None


def check_base(config: RunConfig) -> None:
    """What a comparison needs of the user's config before anything trains."""
    if not config.prune.target_reduction:
        raise ValueError("compare ranks methods at one MACs target: set --target-reduction (> 1)")
    if not config.svd_train.epochs:
        raise ValueError("compare needs svd_epochs > 0: the SVD-training methods' share of the epochs")


def run_method(config: RunConfig, folder: RunFolder, method: str, log: Callable[[str], None]) -> dict:
    """One method's run in ``folder`` (continued where it stopped); returns its row."""
    folder.path.mkdir(parents=True, exist_ok=True)
    saved = saved_config(folder)  # read as this version reads configs: options added since take their defaults
    if saved is not None and saved.to_dict() != config.to_dict():
        raise ValueError(f"{folder.path} was run with another config: use another --out, or the same options")
    atomic_write_json(folder.config, config.to_dict())
    experiment = Experiment(config, folder.path, resume=True, log=log)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers left dense: said by every run alike
        if method == "dense":
            return _dense_control(experiment, folder)
        experiment.run()
    report = read_json(folder.report, what="report")
    metric = report["metric"]
    return {"final": report["compact"][metric], "pruned": report["stages"]["prune"][metric],
            "macs": report["compact"]["macs"], "params": report["compact"]["params"],
            "start": report["baseline"][metric], "start_macs": report["baseline"]["macs"],
            "target_energy_before": report["stages"]["svd_train"].get("target_energy_before")}  # fmt: skip


def _dense_control(experiment: Experiment, folder: RunFolder) -> dict:
    """The starting model, dense, trained for every method's total epochs (no distillation:
    its teacher would be itself), so "dense" is epoch-matched."""
    result = folder.path / "dense.json"
    if result.is_file():
        return read_json(result, what="dense control's result")
    c = experiment.config
    experiment.run(("start",))
    metric = experiment.task.metric
    start = experiment.stage_record("start")
    dense = experiment.dense_baseline()
    epochs = c.svd_train.epochs + c.finetune.epochs
    experiment.trainer.fit("finetune", dense, epochs, Regularization(), lr=c.finetune.lr or c.optim.lr)
    example = experiment.data.example.cpu()
    row = {"final": experiment.evaluation(dense)[metric], "pruned": None,
           "macs": count_macs(dense.cpu(), example), "params": count_params(dense),
           "start": start["baseline"][metric], "start_macs": start["baseline"]["macs"],
           "target_energy_before": None}  # fmt: skip
    atomic_write_json(result, row)
    return row


def curve(folder: RunFolder, metric: str) -> list[dict]:
    """Per epoch over the whole run: ``epoch`` (counted across stages), ``test`` and, where
    measured, ``target_energy``."""
    points = []
    for stage in ("svd_train", "finetune"):
        path = folder.metrics(stage)
        if not path.is_file():
            continue
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                point = {"epoch": len(points) + 1, "stage": stage, "test": float(row[f"test_{metric}"]),
                         "seconds": float(row["seconds"])}  # fmt: skip
                if row.get("target_energy"):
                    point["target_energy"] = float(row["target_energy"])
                points.append(point)
    return points


def run_compare(preset: str | None, config_file: str | None, flags: dict[str, Any], methods: list[str],
                seeds: list[int], out: Path, *, budget_cuts: int = 0,
                log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Every method for every seed into ``out``; writes and returns ``compare.json``'s content."""
    methods = check_methods(methods)
    for flag in ("seed", *OWNED):
        if flag in flags:
            raise ValueError(f"compare sets each run's {flag} itself (--seeds, --methods): drop "
                             f"--{flag.replace('_', '-')}")
    base = resolve_config(preset, config_file, flags)
    check_base(base)
    configs = {m: method_config(m, preset, config_file, flags, base, budget_cuts) for m in methods}  # checked first
    metric = task_named(base.task).metric
    rows = []
    for seed in seeds:
        for method in methods:
            folder = RunFolder(out / f"{method}-s{seed}")
            log(f"compare: {method}, seed {seed} -> {folder.path}")
            config = configs[method].updated(seed=seed)
            row = run_method(config, folder, method, log)
            start = {"epoch": 0, "stage": "start", "test": row["start"]}
            rows.append({"method": method, "seed": seed, **row, "run": folder.path.name,
                         "curve": [start, *curve(folder, metric)]})  # fmt: skip
    result = {"metric": metric, "target_reduction": base.prune.target_reduction,
              "epochs": base.svd_train.epochs + base.finetune.epochs, "svd_epochs": base.svd_train.epochs,
              "budget_cuts": budget_cuts, "config": base.to_dict(), "rows": rows,
              "summary": summary(rows, metric)}  # fmt: skip
    atomic_write_json(out / "compare.json", result)
    atomic_write_text(out / "compare.md", table(result))
    try:
        from svdtrain.pipeline.plots import plot_compare

        plot_compare(rows, metric, result["target_reduction"], out / "compare.png")
    except ImportError as missing:
        log(f"compare: no plot ({missing})")
    return result


def summary(rows: list[dict], metric: str) -> list[dict]:
    """Per method: mean final metric over seeds, and its margin over the best truncation's mean
    (higher is better for accuracy, lower for a loss)."""
    better = max if metric == "accuracy" else min
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    means = {m: statistics.mean(r["final"] for r in group) for m, group in by_method.items()}
    truncations = [means[m] for m in TRUNCATIONS if m in means]
    best = better(truncations) if truncations else None
    sign = 1 if metric == "accuracy" else -1
    return [{"method": m, "seeds": len(group), "final": means[m], "per_seed": [r["final"] for r in group],
             "macs": statistics.mean(r["macs"] for r in group), "start": group[0]["start"],
             "epoch_seconds": statistics.median(p["seconds"] for r in group for p in r["curve"] if "seconds" in p),
             "over_best_truncation": None if best is None or m in TRUNCATIONS or m == "dense"
             else sign * (means[m] - best)} for m, group in by_method.items()]  # fmt: skip


def table(result: dict) -> str:
    """compare.json as a Markdown table: accuracy in percent and points (2 decimals), a loss to
    4 decimals (methods differ by thousandths there)."""
    metric = result["metric"]
    scale, unit, places = (100, "%", 2) if metric == "accuracy" else (1, "", 4)
    lines = [f"Target {result['target_reduction']:g}x fewer MACs, {result['epochs']} epochs for every method "
             f"({result['svd_epochs']} of them SVD training where a method has it).", "",
             f"| method | seeds | {metric} | per seed | MACs | start | vs best truncation | s / epoch (median) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for s in result["summary"]:
        margin = "" if s["over_best_truncation"] is None else f"{scale * s['over_best_truncation']:+.{places}f}"
        seeds = " / ".join(f"{scale * v:.{places}f}{unit}" for v in s["per_seed"])
        lines.append(f"| {s['method']} | {s['seeds']} | {scale * s['final']:.{places}f}{unit} | {seeds} | "
                     f"{s['macs']:,.0f} | {scale * s['start']:.{places}f}{unit} | {margin} | {s['epoch_seconds']:.0f} |")
    return "\n".join(lines) + "\n"
