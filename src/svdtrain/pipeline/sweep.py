"""A sweep over sparsity weights and energy thresholds, sharing the stages they have in common.

Runs with the same sparsity weight share start and svd_train (energy only changes
pruning on), and all runs share start: those stage files are copied, not recomputed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from svdtrain.bounds import read_json
from svdtrain.io import atomic_write, atomic_write_json
from svdtrain.pipeline.config import RunConfig
from svdtrain.pipeline.experiment import Experiment
from svdtrain.pipeline.run_folder import RunFolder
from svdtrain.tasks import task_named


def _label(weight: float, energy: float) -> str:
    return f"w{weight:g}_e{energy:g}"


def run_sweep(
    config: RunConfig, out: Path, sparsity_weights: list[float], energies: list[float], *,
    resume: bool = False, log: Callable[[str], None] = print,
) -> dict:  # fmt: skip
    """Run every (weight, energy) pair into ``out/<label>``; returns and writes ``sweep.json``."""
    folder = RunFolder(out)
    if config.prune.target_reduction:
        raise ValueError("a sweep varies the energy; set target_reduction to 0 (or sweep it by separate runs)")
    sparsity_weights, energies = list(dict.fromkeys(sparsity_weights)), list(dict.fromkeys(energies))
    points = []
    start_source: RunFolder | None = None
    for weight in sparsity_weights:
        trained_source: RunFolder | None = None
        for energy in energies:
            label = _label(weight, energy)
            run_config = config.updated(sparsity_weight=weight, energy=energy)
            run = folder.sweep_run(label)
            run.path.mkdir(parents=True, exist_ok=True)
            for source, stages in ((start_source, ("start",)), (trained_source, ("start", "svd_train"))):
                for stage in stages if source else ():
                    if not run.stage(stage).exists():  # a half-copied file would pass as done
                        with open(source.stage(stage), "rb") as src:
                            atomic_write(run.stage(stage), lambda dst: shutil.copyfileobj(src, dst), mode="wb")
            atomic_write_json(run.config, run_config.to_dict())
            log(f"sweep: {label}")
            # Copied stage files count as done; resume also continues this run's own checkpoints.
            Experiment(run_config, run.path, resume=resume or start_source is not None, log=log).run()
            start_source = start_source or run
            trained_source = trained_source or run
            data = read_json(run.report, what="report")
            metric = data.get("metric", "accuracy")
            points.append({"label": label, "sparsity_weight": weight, "energy": energy,
                           metric: data["compact"][metric], "macs": data["compact"]["macs"],
                           "baseline": data["baseline"]})  # fmt: skip
    metric = task_named(config.task).metric
    result = {"config": config.to_dict(), "metric": metric, "points": points,
              "baseline": points[0]["baseline"] if points else None}  # fmt: skip
    atomic_write_json(folder.sweep, result)
    try:
        from svdtrain.pipeline.plots import plot_metric_vs_macs

        plot_metric_vs_macs(points, result["baseline"], metric, folder.plot(f"{metric}_vs_macs.png"))
    except ImportError as missing:
        log(f"sweep: no plot ({missing})")
    return result
