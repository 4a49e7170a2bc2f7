"""Experiment: the paper's pipeline as stages that run alone or together.

start -> svd_train -> prune -> finetune -> export -> report. Each stage reads the previous
stage's file from the run folder and writes its own, atomically, with the checksum of the file
it read; training stages also checkpoint every epoch, so ``resume`` continues an interrupted
stage to the same result as an uninterrupted run. Resuming skips a stage only while its outputs
are there and its input is the file it was made from: a stage redone redoes those after it.
Where files live is :class:`RunFolder`'s business, how epochs run :class:`StageTrainer`'s, what the
data is :func:`load_data`'s.
"""

from __future__ import annotations

import copy
import time
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from svdtrain.export import export_compact, load_compact
from svdtrain.models import build_model
from svdtrain.surgery import ParamsBudget, compact, count_macs, count_params, decompose, prune, singular_values
from svdtrain.tasks import Task, task_named
from svdtrain.train.checkpoint import (
    damage, file_checksum, load_checkpoint, load_matching, ranks_of, read_state_dict, rebuild_svd_model,
    save_checkpoint,
)  # fmt: skip
from svdtrain.pipeline.config import RunConfig, recipe_summary
from svdtrain.train.distributed import Distributed
from svdtrain.train.regularization import Regularization
from svdtrain.pipeline.engine import build_engine, cut_batches
from svdtrain.pipeline.report import write_report
from svdtrain.pipeline.run_data import Data, load_data, start_checkpoint
from svdtrain.pipeline.run_folder import STAGES, RunFolder, input_stage
from svdtrain.train.runtime import denormals_flushed, seed_everything
from svdtrain.pipeline.sample import sample_text
from svdtrain.train.schedule import shared_span
from svdtrain.pipeline.trainer import StageTrainer
from svdtrain.train.svd_policy import policy_for, speed_example_of, speed_timing
from svdtrain.train.svd_training import SVDTraining

__all__ = ["STAGES", "Experiment"]


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}


class Experiment:
    """One run folder and its config; each ``run_<stage>`` method is one stage."""

    def __init__(self, config: RunConfig, out: str | Path, *, resume: bool = False,
                 log: Callable[[str], None] = print) -> None:  # fmt: skip
        self.dist = Distributed.from_environment()
        self.config, self.folder, self.resume = config, RunFolder(out), resume
        self.log = log if self.dist.is_main else (lambda line: None)
        self.device = self.dist.device(config.run.device)
        self.folder.path.mkdir(parents=True, exist_ok=True)

    # -- what the stages share ---------------------------------------------------------------
    @cached_property
    def task(self) -> Task:
        return task_named(self.config.task, self.data.num_classes)

    @cached_property
    def data(self) -> Data:
        """Loaded by rank 0 first (a download or a decode cache is written once), then the others."""
        if not self.dist.is_main:
            self.dist.barrier()
        data = load_data(self.config, self.device)
        if self.dist.is_main:
            self.dist.barrier()
        return data

    @cached_property
    def trainer(self) -> StageTrainer:
        return StageTrainer(self.config, self.data, self.task, self.device, self.folder, resume=self.resume, log=self.log,
                       dist=self.dist)  # fmt: skip

    def engine(self, model: nn.Module, record: dict, *, pruned: bool = False) -> SVDTraining:
        """The method (:class:`SVDTraining`) on the factored ``model`` loaded from a stage file
        whose ``record`` may hold the rank multiple an earlier stage measured."""
        baseline = self.stage_record("start")["baseline"]["macs"]
        engine = build_engine(self.config, self.data, model, baseline, log=self.log, dist=self.dist,
                              teacher=self.teacher, measured_multiple=record.get("measured_multiple"))  # fmt: skip
        engine.pruned = pruned
        return engine

    @property
    def speed_example(self) -> torch.Tensor:
        """A CPU batch of ``speed_batch_size`` inputs, the shape speed targets are timed at (as the engine's)."""
        return speed_example_of(self.config.svd_training, self.data.example)

    def dense_model(self) -> nn.Module:
        return build_model(self.config.model, self.data.num_classes, self.config.data.block_length).to(self.device)

    def stage_record(self, stage: str) -> dict:
        """What ``stage`` saved."""
        path = self.folder.stage(stage)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run the '{stage}' stage first (or 'svdtrain run')")
        return load_checkpoint(path)

    def _drop_damaged_stage_files(self) -> None:
        """Before resuming: stage files whose checksum fails are removed (rank 0 decides and
        removes, for every process), so their stages run again from their inputs."""
        damaged = []
        if self.dist.is_main:
            for stage in STAGES[:-1]:
                why = damage(self.folder.stage(stage)) if self.folder.stage(stage).exists() else None
                if why:
                    self.log(f"WARNING {why}; the {stage} stage runs again from its input")
                    self.folder.remove_stage(stage)
                    damaged.append(stage)
        self.dist.broadcast(damaged)
        self.dist.barrier()

    def load_stage(self, stage: str) -> tuple[nn.Module, dict]:
        """The SVD model saved by ``stage``, and the stage's record."""
        path = self.folder.stage(stage)
        record = self.stage_record(stage)
        model = rebuild_svd_model(self.dense_model(), self.config.start.scheme, record["ranks"])
        load_matching(model, record["model"], str(path))
        return model, record

    def save_stage(self, stage: str, model: nn.Module, **record) -> None:
        payload = {"stage": stage, "config": self.config.to_dict(), "ranks": ranks_of(model),
                   "model": _cpu_state(model), **record}  # fmt: skip
        if self.dist.is_main:
            save_checkpoint(self.folder.stage(stage), {**payload, "input": self._input_record(stage)})
            self.folder.drop_checkpoints(stage)
        self.dist.barrier()  # the others read it back in the next stage

    def _input_record(self, stage: str) -> dict | None:
        """The stage file ``stage`` is made from and its checksum (None for start)."""
        previous = input_stage(stage)
        return None if previous is None else {"stage": previous, "sha256": file_checksum(self.folder.stage(previous))}

    def redo_reason(self, stage: str) -> str | None:
        """Why ``stage``, whose file is there, must run again when resuming, or None: it is done.
        An output is gone, or its input is not the stage file it was made from (that stage was
        redone since). A stage file from before inputs were recorded is trusted, as it was."""
        missing = next((path for path in self.folder.outputs(stage) if not path.exists()), None)
        if missing is not None:
            return f"{missing.relative_to(self.folder.path)} is missing"
        previous = input_stage(stage)
        if stage == "report" or previous is None:
            return None
        made_from = self.stage_record(stage).get("input")
        path = self.folder.stage(previous)
        if made_from is not None and (not path.exists() or file_checksum(path) != made_from["sha256"]):
            return f"its input {path.name} changed since it ran"
        return None

    def evaluation(self, model: nn.Module) -> dict[str, float]:
        return self.trainer.evaluation(model)

    def describe(self, metrics: dict[str, float]) -> str:
        return "  ".join(f"{key} {value:.4f}" for key, value in metrics.items())

    def dense_baseline(self) -> nn.Module:
        """The start stage's model (the baseline every result is measured against), merged back
        into dense layers so its forward pass costs what the dense model's does."""
        start, _ = self.load_stage("start")
        return compact(start, self.data.example).to(self.device)

    @cached_property
    def teacher(self) -> nn.Module | None:
        """The dense baseline, the teacher where finetune's distill_weight is set: for
        fine-tuning, and for SVD training when svd_train.distill asks (off by default: the
        full-rank student starts equal to its teacher, and the sparsity term is what should move it)."""
        return self.dense_baseline() if self.config.finetune.distill_weight else None

    def _last_or_evaluate(self, history: list[dict], model: nn.Module) -> dict[str, float]:
        """The stage's final test metrics: from its last epoch, or measured when it trained none."""
        if history:
            return {key: history[-1][f"test_{key}"] for key in self.task.reported}
        return self.evaluation(model)

    # -- stages ------------------------------------------------------------------------------
    def run_start(self) -> None:
        c, s = self.config, self.config.start
        started = time.perf_counter()
        checkpoint = start_checkpoint(c) if s.init == "svd" and s.checkpoint else None  # missing: fail before the data
        self.check_target_reach()  # before any training; its random factors are reseeded away below
        seed_everything(c.run.seed)
        dense = self.dense_model()
        dense_macs, dense_params = count_macs(dense, self.data.example), count_params(dense)
        history: list[dict] = []
        if s.init == "svd":
            if checkpoint:
                load_matching(dense, read_state_dict(checkpoint), str(checkpoint))
                self.log(f"start: pretrained {c.model} from {checkpoint}: {self.describe(self.evaluation(dense))}")
            if s.epochs:  # adapts a pretrained model, or trains the dense model from scratch
                history = self.trainer.fit("start", dense, s.epochs, Regularization())
                # The trained dense model is a baseline of its own, and a checkpoint for other runs.
                if self.dist.is_main:
                    save_checkpoint(self.folder.adapted_dense, {"state_dict": _cpu_state(dense)})
            metrics = self.evaluation(dense)
            model = self._lean(decompose(dense, scheme=s.scheme, init="svd"))
        else:
            model = self._lean(decompose(dense, scheme=s.scheme, init="random"))
            if s.epochs:
                regularization = Regularization(ortho_weight=c.svd_train.ortho_weight, every=c.svd_train.regularize_every)
                history = self.trainer.fit("start", model, s.epochs, regularization)
            metrics = self.evaluation(model)
        baseline = {**metrics, "macs": dense_macs, "params": dense_params}
        self.log(f"start: baseline {self.describe(metrics)}, {dense_macs:,} MACs")
        self.save_stage("start", model, baseline=baseline, history=history, seconds=time.perf_counter() - started,
                        **metrics)  # fmt: skip

    def _lean(self, model: nn.Module) -> nn.Module:
        """The decomposed model cut to ``lean_start`` of the dense parameters, where set."""
        share = self.config.start.lean_start
        if share:
            ranks = prune(model, ParamsBudget(share))
            self.log(f"start: lean start at {share:g} of the dense parameters ({sum(ranks.values())} singular values)")
        return model

    def run_svd_train(self) -> None:
        t = self.config.svd_train
        started = time.perf_counter()
        model, record = self.load_stage("start")
        engine = self.engine(model, record)
        before = {k: v.tolist() for k, v in singular_values(model).items()}
        energy_before = engine.target_energy()
        history = self.trainer.fit("svd_train", model, t.epochs, engine=engine, cuts=t.gradual,
                                   lr_span=self._lr_span("svd_train"))  # fmt: skip
        after = {k: v.tolist() for k, v in singular_values(model).items()}
        self.save_stage("svd_train", model, spectra={"before": before, "after": after}, history=history,
                        **({"target_energy_before": energy_before} if energy_before is not None else {}),
                        measured_multiple=engine.measured_multiple, seconds=time.perf_counter() - started,
                        **self._last_or_evaluate(history, model))  # fmt: skip

    def run_prune(self) -> None:
        started = time.perf_counter()
        model, record = self.load_stage("svd_train")
        engine = self.engine(model, record)
        calibration, batchnorm = cut_batches(self.config, self.data, 0)
        ranks = engine.prune(batches=calibration, recalibrate=False)
        record = {}
        if engine.recalibrates():
            before = self.evaluation(model)
            record = {f"{key}_before_bn_recalibration": value for key, value in before.items()}
            self.log(f"prune: {self.describe(before)} before BatchNorm recalibration")
            engine.recalibrate_batchnorm(batchnorm)
        metrics = self.evaluation(model)
        self.log(f"prune: kept {sum(ranks.values())} singular values in {len(ranks)} weights; {self.describe(metrics)}")
        self.save_stage("prune", model, seconds=time.perf_counter() - started, measured_multiple=engine.measured_multiple,
                        **metrics, **record)  # fmt: skip

    def run_finetune(self) -> None:
        c, f = self.config, self.config.finetune
        started = time.perf_counter()
        model, record = self.load_stage("prune")
        history = self.trainer.fit("finetune", model, f.epochs, engine=self.engine(model, record, pruned=True),
                                   lr=f.lr or c.optim.lr, lr_span=self._lr_span("finetune"))  # fmt: skip
        self.save_stage("finetune", model, history=history, seconds=time.perf_counter() - started,
                        **self._last_or_evaluate(history, model))  # fmt: skip

    def _lr_span(self, stage: str) -> tuple[int, int] | None:
        c = self.config
        return shared_span(c.optim.lr_schedule, stage, c.svd_train.epochs, c.finetune.epochs)

    def run_export(self) -> None:
        self.data  # every process: loading the data is collective the first time  # noqa: B018
        if not self.dist.is_main:  # one process writes and checks the export
            self.dist.barrier()
            return
        self._export()
        self.dist.barrier()

    def _export(self) -> None:
        c = self.config
        started = time.perf_counter()
        model, _ = self.load_stage("finetune")
        # With a speed target each layer's form is chosen by measured time, at the timed batch size.
        timing = {} if not c.prune.target_speedup else dict(
            choose="measured", timing_input=self.speed_example,
            **{f"timing_{key}": value for key, value in speed_timing(c.svd_training).items()})  # fmt: skip
        out = self.folder.export
        info = export_compact(model, out, self.data.example, model_name=c.model, num_classes=self.data.num_classes,
                              context=c.data.block_length, sequence=c.data.is_text, onnx=c.export.onnx,
                              **timing)  # fmt: skip
        small = load_compact(out).to(self.device)  # count the exported structure itself
        scripted = out / "model.torchscript.pt"
        # Score an exported file itself: TorchScript, or weights + spec where TorchScript cannot compile the model.
        compact_model = torch.jit.load(str(scripted)).to(self.device) if scripted.exists() else small
        info.update(**self.trainer.evaluation(compact_model, alone=True), macs=count_macs(small, self.data.example),
                    params=count_params(small))  # fmt: skip
        if self.task.generates:
            info["samples"] = self._samples(small)
        drifted = {k: v for k, v in info.items() if k.endswith("max_abs_diff") and v > 1e-3}
        if drifted:  # an export that does not reproduce the model: say so, it is not an error of the run
            self.log(f"export: WARNING exported outputs differ from the model's: {drifted} (a model this sensitive "
                     "to round-off, e.g. a recurrent net with large weights, amplifies runtime differences)")
        if info.get("dense_as_pairs_measured_slower"):
            slower = info["dense_as_pairs_measured_slower"]
            compiled = ", compiled" if c.prune.speed_compiled else ""
            self.log(f"export: {len(slower)} weight(s) stay dense, their pairs measured slower on "
                     f"{c.prune.speed_device} in {c.prune.speed_dtype}{compiled}: {', '.join(slower)}")  # fmt: skip
        self.log(f"export: compact {self.describe({k: info[k] for k in self.task.reported})}, "
                 f"{info['macs']:,} MACs -> {out}")  # fmt: skip
        seconds = time.perf_counter() - started
        save_checkpoint(self.folder.stage("export"), {"stage": "export", "info": info, "seconds": seconds,
                                                       "input": self._input_record("export")})  # fmt: skip

    def _samples(self, small: nn.Module) -> dict[str, str]:
        """The same prompt continued by the dense baseline and the compact model (fixed seed)."""
        length, seed = self.config.data.block_length, self.config.run.seed
        prompt = self.data.example[:, : max(1, length // 4)]
        return {name: sample_text(model, prompt, self.data.corpus, length, seed=seed)
                for name, model in (("dense", self.dense_baseline()), ("compact", small))}  # fmt: skip

    def run_report(self) -> dict | None:
        self.data  # noqa: B018  (collective the first time, as in run_export)
        report = write_report(self) if self.dist.is_main else None
        self.dist.barrier()
        return report

    def run(self, stages: tuple[str, ...] = STAGES) -> None:
        """Run ``stages`` in order; resuming, skip those done (:meth:`redo_reason`). Once a stage
        has run, every stage after it runs too, and their epoch checkpoints are dropped: they were
        made from the file it replaced."""
        if self.resume:
            self._drop_damaged_stage_files()
        recipe = self.config.svd_train.recipe
        self.log(f"recipe {recipe}: {recipe_summary(recipe)}")
        ran = False  # a stage has run: those after it were made from the file it replaced
        for stage in stages:
            if self.resume and self.folder.done(stage):
                why = "a stage before it ran again" if ran else self.dist.broadcast(
                    self.redo_reason(stage) if self.dist.is_main else None)  # fmt: skip
                if why is None:
                    self.log(f"{stage}: already done, skipped")
                    continue
                self.log(f"{stage}: done before, but {why}; it runs again")
            if ran and self.dist.is_main:
                self.folder.drop_checkpoints(stage)
            self.dist.barrier()
            self.run_stage(stage)
            ran = True

    def check_target_reach(self) -> None:
        """Refuse a MACs or speed target no ranks can meet before anything trains: the deepest
        MACs cut is every factored weight at rank 1, which shapes alone decide; the fastest
        ranks are measured as the prune stage will measure them, on the full-rank model."""
        target, speedup = self.config.prune.target_reduction, self.config.prune.target_speedup
        if not (target or speedup):
            return
        dense = self.dense_model()
        with warnings.catch_warnings():  # what stays dense is said once, when the start stage decomposes
            warnings.simplefilter("ignore")
            floor = decompose(copy.deepcopy(dense), scheme=self.config.start.scheme, init="random",
                              rank=None if speedup else 1)  # fmt: skip
        if speedup:
            policy = policy_for(self.config.svd_training, example=self.data.example, speed_example=self.speed_example,
                                baseline_macs=count_macs(dense, self.data.example))  # fmt: skip
            return policy.check_reach(floor)
        reach = count_macs(dense, self.data.example) / count_macs(floor, self.data.example)
        if reach < target:
            raise ValueError(f"target_reduction {target:g} is out of reach for {self.config.model}: even rank 1 in "
                             f"every factored weight cuts its MACs {reach:.2f}x")  # fmt: skip

    def run_stage(self, stage: str) -> Any:
        """One stage (its ``run_<stage>``), subnormals flushed to zero as the config says."""
        with denormals_flushed(self.config.run.flush_denormals):
            return getattr(self, f"run_{stage}")()
