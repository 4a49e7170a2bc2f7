"""report.json and the run's plots, gathered from the stage files of a run folder."""

from __future__ import annotations

from typing import Callable, Protocol

from torch import nn

from svdtrain.bounds import read_json
from svdtrain.io import atomic_write_json
from svdtrain.surgery import factored_weights
from svdtrain.tasks import Task
from svdtrain.pipeline.config.sources import to_flags
from svdtrain.pipeline.run_folder import RunFolder


class FinishedRun(Protocol):
    """What the report reads of a run (an ``Experiment``), so this module needs none."""

    folder: RunFolder
    task: Task
    log: Callable[[str], None]

    def load_stage(self, stage: str) -> tuple[nn.Module, dict]: ...

    def stage_record(self, stage: str) -> dict: ...


def write_report(experiment: FinishedRun) -> dict:
    """Write ``report.json`` (last, so its presence marks a finished run) and PNG plots."""
    folder = experiment.folder
    model, finetune = experiment.load_stage("finetune")
    records = {stage: experiment.stage_record(stage) for stage in ("start", "svd_train", "prune")}
    export = experiment.stage_record("export")
    info = export["info"]
    records["finetune"] = finetune
    reported = experiment.task.reported

    def metrics(record: dict) -> dict:
        return {key: record[key] for key in reported}

    stages = {
        stage: {**metrics(record), "seconds": round(record["seconds"], 2), "epochs": len(record.get("history", []))}
        for stage, record in records.items()
    }  # fmt: skip
    for key in reported:
        if f"{key}_before_bn_recalibration" in records["prune"]:
            stages["prune"][f"{key}_before_bn_recalibration"] = records["prune"][f"{key}_before_bn_recalibration"]
    if "target_energy_before" in records["svd_train"]:  # what a cut at the target kept before SVD training
        stages["svd_train"]["target_energy_before"] = records["svd_train"]["target_energy_before"]
    stages["export"] = {**metrics(info), "seconds": round(export["seconds"], 2)}
    spec = read_json(folder.export / "spec.json", what="spec")
    forms = {name: entry["form"] for name, entry in spec["weights"].items()}
    layers = [{"name": name, "full_rank": handle.full_rank, "rank": handle.rank, "form": forms.get(name, "dense")}
              for name, handle in factored_weights(model).items()]  # fmt: skip
    baseline = records["start"]["baseline"]
    report = {
        "task": experiment.task.name,
        "metric": experiment.task.metric,  # what the run is judged on
        "baseline": baseline,
        "compact": {**metrics(info), "macs": info["macs"], "params": info["params"]},
        "macs_reduction": baseline["macs"] / info["macs"],
        "params_reduction": baseline["params"] / info["params"],
        "layers": layers,
        "stages": stages,
        "export": {k: v for k, v in info.items() if k not in (*reported, "macs", "params", "samples")},
        "config": finetune["config"],
    }
    if "samples" in info:
        report["samples"] = info["samples"]
    final = to_flags(finetune["config"], "the finetune stage's config")
    changes = {
        stage: {k: v for k, v in to_flags(record["config"], f"the {stage} stage's config").items() if final.get(k) != v}
        for stage, record in records.items()
    }
    changes = {stage: diff for stage, diff in changes.items() if diff}
    if changes:  # a stage was re-run alone with other settings: say which ran with what
        report["config_differences"] = changes
    try:
        from svdtrain.pipeline.plots import plot_ranks, plot_spectra

        spectra = records["svd_train"]["spectra"]
        plot_spectra(spectra["before"], spectra["after"], folder.plot("spectra.png"))
        plot_ranks(layers, folder.plot("ranks.png"))
        report["plots"] = ["spectra.png", "ranks.png"]
    except ImportError as missing:
        experiment.log(f"report: no plots ({missing})")
        report["plots"] = []
    atomic_write_json(folder.report, report)
    return report
