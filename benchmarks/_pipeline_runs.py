"""Shared by the comparison benchmarks: one pipeline run of a preset with overrides, in its
own folder, resumable (a run cut off continues where it stopped when started again)."""

from __future__ import annotations

import warnings
from pathlib import Path

from svdtrain.io import atomic_write_json
from svdtrain.pipeline.config import resolve_config
from svdtrain.pipeline.experiment import STAGES, Experiment


def run_preset(preset: str, out: Path, overrides: dict, stages: tuple[str, ...] = STAGES,
               quiet: bool = False) -> Experiment:  # fmt: skip
    config = resolve_config(preset, overrides=overrides)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", config.to_dict())
    experiment = Experiment(config, out, resume=True, log=(lambda line: None) if quiet else print)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers left dense (embeddings, tied heads): expected here
        experiment.run(stages)
    return experiment
