"""A sweep over sparsity weights and energy thresholds, sharing the stages they have in common.

Runs with the same sparsity weight share start and svd_train (energy only changes
pruning on), and all runs share start: those stage files are copied, not recomputed.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

from svdtrain.io import atomic_write_json
from svdtrain.train.config import RunConfig
from svdtrain.train.experiment import Experiment


def _label(weight: float, energy: float) -> str:
    return f"w{weight:g}_e{energy:g}"


def run_sweep(
    config: RunConfig, out: Path, sparsity_weights: list[float], energies: list[float], *,
    resume: bool = False, log: Callable[[str], None] = print,
) -> dict:  # fmt: skip
    """Run every (weight, energy) pair into ``out/<label>``; returns and writes ``sweep.json``."""
    points = []
    start_source: Path | None = None
    for weight in sparsity_weights:
        trained_source: Path | None = None
        for energy in energies:
            label = _label(weight, energy)
            run_config = dataclasses.replace(config, sparsity_weight=weight, energy=energy)
            run_dir = out / label
            run_dir.mkdir(parents=True, exist_ok=True)
            for source, stages in ((start_source, ("start",)), (trained_source, ("start", "svd_train"))):
                for stage in stages if source else ():
                    if not (run_dir / f"{stage}.pt").exists():
                        shutil.copyfile(source / f"{stage}.pt", run_dir / f"{stage}.pt")
            atomic_write_json(run_dir / "config.json", run_config.to_dict())
            log(f"sweep: {label}")
            # Copied stage files count as done; resume also continues this run's own checkpoints.
            Experiment(run_config, run_dir, resume=True if (start_source or resume) else resume, log=log).run()
            start_source = start_source or run_dir
            trained_source = trained_source or run_dir
            report = (run_dir / "report.json").read_text()
            import json

            data = json.loads(report)
            points.append({"label": label, "sparsity_weight": weight, "energy": energy,
                           "accuracy": data["compact"]["accuracy"], "macs": data["compact"]["macs"],
                           "baseline": data["baseline"]})  # fmt: skip
    result = {"config": config.to_dict(), "points": points, "baseline": points[0]["baseline"] if points else None}
    atomic_write_json(out / "sweep.json", result)
    try:
        from svdtrain.train.plots import plot_accuracy_vs_macs

        plot_accuracy_vs_macs(points, result["baseline"], out / "accuracy_vs_macs.png")
    except ImportError as missing:
        log(f"sweep: no plot ({missing})")
    return result
