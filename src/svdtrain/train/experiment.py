"""Experiment: the paper's pipeline as stages that run alone or together.

start -> svd_train -> prune -> finetune -> export -> report. Each stage reads the previous
stage's file from the run folder and writes its own (``<stage>.pt``), atomically; training
stages also checkpoint every epoch (``<stage>.ckpt.pt``) so ``resume`` continues an
interrupted stage to the same result as an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import random
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from svdtrain.data import (
    ImageArrays, TensorBatches, TokenBatches, load_byte_text, load_char_text, load_cifar10, load_digits_split,
    load_image_folder, load_word_corpus,
)  # fmt: skip
from svdtrain.io import atomic_write_json, atomic_write_text
from svdtrain.models import build_model
from svdtrain.tasks import Task, task_named
from svdtrain.surgery import (
    compact, copy_model, count_macs, count_params, decompose, energy_for_macs, factored_weights, prune, ranks_for_macs,
    ranks_for_speedup, singular_values,
)  # fmt: skip
from svdtrain.train.checkpoint import (
    load_checkpoint, load_matching, ranks_of, read_state_dict, rebuild_svd_model, save_checkpoint,
)  # fmt: skip
from svdtrain.train.config import RunConfig
from svdtrain.train.distill import Distillation
from svdtrain.train.export import export_compact, load_compact
from svdtrain.train.loop import Regularization, evaluate_metrics, recalibrate_batchnorm, train_epoch
from svdtrain.train.progress import format_eta, progress_bar
from svdtrain.train.report import write_report
from svdtrain.train.sample import sample_text

STAGES = ("start", "svd_train", "prune", "finetune", "export", "report")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return torch.device(name)


def _digits_arrays(seed: int) -> tuple[ImageArrays, ImageArrays]:
    x_train, y_train, x_test, y_test = load_digits_split(seed=seed)
    as_uint8 = lambda x: (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
    classes = [str(i) for i in range(10)]
    return ImageArrays(as_uint8(x_train), y_train.numpy(), classes), ImageArrays(as_uint8(x_test), y_test.numpy(), classes)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}


@dataclass
class Data:
    train: TensorBatches
    test: TensorBatches
    num_classes: int  # classes, or a language model's vocabulary size
    example: torch.Tensor  # one test input: a normalized image (1, C, H, W) or a block of tokens (1, T)
    corpus: object = None  # text datasets: the Corpus (its vocabulary decodes samples)


class Experiment:
    """One run folder and its config; each ``run_<stage>`` method is one stage."""

    def __init__(self, config: RunConfig, out: str | Path, *, resume: bool = False,
                 log: Callable[[str], None] = print) -> None:  # fmt: skip
        self.config, self.out, self.resume, self.log = config, Path(out), resume, log
        self.device = resolve_device(config.device)
        self.out.mkdir(parents=True, exist_ok=True)

    # -- data and models ----------------------------------------------------------------
    @cached_property
    def task(self) -> Task:
        return task_named(self.config.task)

    @cached_property
    def data(self) -> Data:
        c = self.config
        if c.task == "language_modeling":
            return self._text_data()
        if c.dataset == "cifar10":
            train, test = load_cifar10(c.data, download=c.download)
        elif c.dataset == "image_folder":
            train, test = load_image_folder(c.data, Path(c.cache_dir).expanduser(), c.image_size or None)
        else:
            train, test = _digits_arrays(c.seed)
        common = dict(mean=c.mean, std=c.std, device=self.device, seed=c.seed)
        train_batches = TensorBatches(train, c.batch_size, shuffle=True, augment=c.augment,
                                      limit=c.train_limit or None, **common)  # fmt: skip
        test_batches = TensorBatches(test, c.eval_batch_size, limit=c.test_limit or None, **common)
        example = next(iter(test_batches))[0][:1]
        return Data(train_batches, test_batches, len(train.classes), example)

    def _text_data(self) -> Data:
        c = self.config
        loaders = {"text_char": load_char_text, "text_word": load_word_corpus, "text_byte": load_byte_text}
        corpus = loaders[c.dataset](c.data)
        common = dict(device=self.device, seed=c.seed)
        train = TokenBatches(corpus.train, c.batch_size, length=c.block_length, shuffle=True,
                             limit=c.train_limit or None, name=f"{c.data} train", **common)  # fmt: skip
        test = TokenBatches(corpus.valid, c.eval_batch_size, length=c.block_length, limit=c.test_limit or None,
                            name=f"{c.data} valid", **common)  # fmt: skip
        example = next(iter(test))[0][:1]  # (1, T)
        return Data(train, test, len(corpus.vocab), example, corpus)

    @property
    def speed_example(self) -> torch.Tensor:
        """A CPU batch of ``speed_batch_size`` inputs, the shape speed targets are timed at."""
        example = self.data.example.cpu()
        return example.expand(self.config.speed_batch_size, *example.shape[1:]).contiguous()

    def dense_model(self) -> nn.Module:
        return build_model(self.config.model, self.data.num_classes, self.config.block_length).to(self.device)

    def stage_path(self, stage: str) -> Path:
        return self.out / f"{stage}.pt"

    def done(self, stage: str) -> bool:
        return self.stage_path(stage).exists() if stage != "report" else (self.out / "report.json").exists()

    def load_stage(self, stage: str) -> tuple[nn.Module, dict]:
        """The SVD model saved by ``stage``, and the stage's record."""
        path = self.stage_path(stage)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run the '{stage}' stage first (or 'svdtrain run')")
        record = load_checkpoint(path)
        model = rebuild_svd_model(self.dense_model(), self.config.scheme, record["ranks"])
        load_matching(model, record["model"], str(path))
        return model, record

    def save_stage(self, stage: str, model: nn.Module, **record) -> None:
        payload = {"stage": stage, "config": self.config.to_dict(), "ranks": ranks_of(model),
                   "model": _cpu_state(model), **record}  # fmt: skip
        save_checkpoint(self.stage_path(stage), payload)
        self.checkpoint_path(stage).unlink(missing_ok=True)

    def checkpoint_path(self, stage: str) -> Path:
        return self.out / f"{stage}.ckpt.pt"

    def evaluation(self, model: nn.Module) -> dict[str, float]:
        """The task's reported metrics on the test (or validation) split."""
        metrics = evaluate_metrics(model, self.data.test, self.device, self.task)
        return {key: metrics[key] for key in self.task.reported}

    def describe(self, metrics: dict[str, float]) -> str:
        return "  ".join(f"{key} {value:.4f}" for key, value in metrics.items())

    @cached_property
    def distillation(self) -> Distillation | None:
        """For fine-tuning: the start stage's model (the baseline every result is measured
        against) as teacher, merged back into dense layers so its forward pass costs what the
        dense model's does. Not used in SVD training, where the full-rank student still equals
        its teacher at the start and the sparsity term is what should move it."""
        c = self.config
        if not c.distill_weight:
            return None
        start, _ = self.load_stage("start")
        teacher = compact(start, self.data.example).to(self.device)
        return Distillation(teacher, c.distill_weight, c.distill_temperature)

    # -- training with per-epoch checkpoints ---------------------------------------------
    def _optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """Weight decay for ordinary parameters only: U, s and Vh have their own regularizers,
        and decaying s would add an L2 pull that fights the chosen sparsity term."""
        c = self.config
        factors = {id(p) for handle in factored_weights(model).values() for p in handle.factors}
        groups = [
            {"params": [p for p in model.parameters() if id(p) not in factors], "weight_decay": c.weight_decay},
            {"params": [p for p in model.parameters() if id(p) in factors], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        if c.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=c.momentum)
        return torch.optim.Adam(groups, lr=lr)

    def train(
        self, stage: str, model: nn.Module, epochs: int, regularization: Regularization, lr: float | None = None,
        distillation: Distillation | None = None,
    ) -> list[dict]:
        """Train ``model`` in place for ``epochs`` (at ``lr``, default the config's); returns the history."""
        optimizer = self._optimizer(model, lr or self.config.lr)
        milestones = sorted({round(m * epochs) if m < 1 else int(m) for m in self.config.lr_milestones} - {0})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, self.config.lr_gamma)
        history: list[dict] = []
        ckpt = self.checkpoint_path(stage)
        if self.resume and ckpt.exists():
            state = load_checkpoint(ckpt)
            load_matching(model, state["model"], str(ckpt))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history = state["history"]
            self.log(f"{stage}: resuming after epoch {len(history)}/{epochs}")
        stage_index = STAGES.index(stage) if stage in STAGES else len(STAGES)
        for epoch in range(len(history), epochs):
            start = time.perf_counter()
            self.data.train.set_epoch(stage_index * 100_000 + epoch)  # each stage/epoch: its own fixed order
            batches = progress_bar(self.data.train, len(self.data.train), f"{stage} {epoch + 1}/{epochs}")
            metrics = train_epoch(model, batches, optimizer, regularization, self.device, distillation, self.task,
                                  self.config.grad_clip)  # fmt: skip
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            test = self.evaluation(model)
            seconds = time.perf_counter() - start
            history.append({"stage": stage, "epoch": epoch + 1, "lr": lr,
                            **{f"train_{k}": v for k, v in metrics.items()},
                            **{f"test_{k}": v for k, v in test.items()}, "seconds": round(seconds, 3)})  # fmt: skip
            save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(), "history": history})  # fmt: skip
            self._write_metrics(stage, history)
            eta = format_eta(seconds * (epochs - epoch - 1))
            train_metric = metrics[self.task.metric]
            self.log(f"{stage} {epoch + 1}/{epochs}  loss {metrics['loss']:.4f}  train {train_metric:.4f}  "
                     f"test {test[self.task.metric]:.4f}  lr {lr:.2e}  {seconds:.0f}s  eta {eta}")  # fmt: skip
        return history

    def _write_metrics(self, stage: str, history: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.out / "metrics" / f"{stage}.csv", buffer.getvalue())

    # -- stages ------------------------------------------------------------------------
    def _last_or_evaluate(self, history: list[dict], model: nn.Module) -> dict[str, float]:
        """The stage's final test metrics: from its last epoch, or measured when it trained none."""
        if history:
            return {key: history[-1][f"test_{key}"] for key in self.task.reported}
        return self.evaluation(model)

    def run_start(self) -> None:
        c = self.config
        started = time.perf_counter()
        seed_everything(c.seed)
        dense = self.dense_model()
        dense_macs, dense_params = count_macs(dense, self.data.example), count_params(dense)
        history: list[dict] = []
        if c.init == "svd":
            if c.checkpoint:
                load_matching(dense, read_state_dict(c.checkpoint), c.checkpoint)
                self.log(f"start: pretrained {c.model} from {c.checkpoint}: {self.describe(self.evaluation(dense))}")
            if c.start_epochs:  # adapts a pretrained model, or trains the dense model from scratch
                history = self.train("start", dense, c.start_epochs, Regularization())
                # The trained dense model is a baseline of its own, and a checkpoint for other runs.
                save_checkpoint(self.out / "adapted_dense.pt", {"state_dict": _cpu_state(dense)})
            metrics = self.evaluation(dense)
            model = decompose(dense, scheme=c.scheme, init="svd")
        else:
            model = decompose(dense, scheme=c.scheme, init="random")
            if c.start_epochs:
                regularization = Regularization(ortho_weight=c.ortho_weight, every=c.regularize_every)
                history = self.train("start", model, c.start_epochs, regularization)
            metrics = self.evaluation(model)
        baseline = {**metrics, "macs": dense_macs, "params": dense_params}
        self.log(f"start: baseline {self.describe(metrics)}, {dense_macs:,} MACs")
        self.save_stage("start", model, baseline=baseline, history=history, seconds=time.perf_counter() - started,
                        **metrics)  # fmt: skip

    def run_svd_train(self) -> None:
        c = self.config
        started = time.perf_counter()
        model, _ = self.load_stage("start")
        before = {k: v.tolist() for k, v in singular_values(model).items()}
        regularization = Regularization(c.ortho_weight, c.sparsity_weight, c.sparsity_kind, c.regularize_every)
        history = self.train("svd_train", model, c.svd_epochs, regularization)
        after = {k: v.tolist() for k, v in singular_values(model).items()}
        self.save_stage("svd_train", model, spectra={"before": before, "after": after}, history=history,
                        seconds=time.perf_counter() - started, **self._last_or_evaluate(history, model))  # fmt: skip

    def run_prune(self) -> None:
        c = self.config
        started = time.perf_counter()
        model, _ = self.load_stage("svd_train")
        if c.target_speedup:
            timing_model = copy_model(model).cpu().eval()  # timed where it will be deployed: this CPU
            ranks = prune(model, rank=ranks_for_speedup(timing_model, self.speed_example, c.target_speedup,
                                                        multiple=c.rank_multiple))  # fmt: skip
        elif c.target_reduction:
            budget = int(load_checkpoint(self.stage_path("start"))["baseline"]["macs"] / c.target_reduction)
            if c.rank_allocation == "greedy":
                ranks = prune(model, rank=ranks_for_macs(model, self.data.example, budget, multiple=c.rank_multiple))
            else:
                energy = energy_for_macs(model, self.data.example, budget)
                self.log(f"prune: energy {energy:.3g} meets the {c.target_reduction:g}x MACs target")
                ranks = prune(model, energy=energy)
        elif c.threshold > 0:
            ranks = prune(model, threshold=c.threshold)
        else:
            ranks = prune(model, energy=c.energy)
        record = {}
        has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if c.bn_recalibration_batches and has_batchnorm:
            before = self.evaluation(model)
            record.update({f"{key}_before_bn_recalibration": value for key, value in before.items()})
            batches = self.data.train.batches(augment=c.augment and c.bn_recalibration_augment)
            recalibrate_batchnorm(model, batches, c.bn_recalibration_batches, self.device)
            self.log(f"prune: {self.describe(before)} before BatchNorm recalibration")
        metrics = self.evaluation(model)
        self.log(f"prune: kept {sum(ranks.values())} singular values in {len(ranks)} weights; {self.describe(metrics)}")
        self.save_stage("prune", model, seconds=time.perf_counter() - started, **metrics, **record)

    def run_finetune(self) -> None:
        c = self.config
        started = time.perf_counter()
        model, _ = self.load_stage("prune")
        history = self.train("finetune", model, c.finetune_epochs,
                             Regularization(ortho_weight=c.ortho_weight, every=c.regularize_every),
                             lr=c.finetune_lr or c.lr, distillation=self.distillation)  # fmt: skip
        self.save_stage("finetune", model, history=history, seconds=time.perf_counter() - started,
                        **self._last_or_evaluate(history, model))  # fmt: skip

    def run_export(self) -> None:
        started = time.perf_counter()
        model, _ = self.load_stage("finetune")
        c = self.config
        # With a speed target each layer's form is chosen by measured time, at the timed batch size.
        timing = dict(choose="measured", timing_input=self.speed_example) if c.target_speedup else {}
        info = export_compact(model, self.out / "export", self.data.example, model_name=c.model,
                              num_classes=self.data.num_classes, context=c.block_length,
                              sequence=self.task.name == "language_modeling", onnx=c.export_onnx, **timing)  # fmt: skip
        small = load_compact(self.out / "export").to(self.device)  # count the exported structure itself
        scripted = self.out / "export" / "model.torchscript.pt"
        # Score an exported file itself: TorchScript, or weights + spec where TorchScript cannot compile the model.
        compact_model = torch.jit.load(str(scripted)).to(self.device) if scripted.exists() else small
        info.update(
            **self.evaluation(compact_model),
            macs=count_macs(small, self.data.example),
            params=count_params(small),
        )
        if self.data.corpus is not None:
            info["samples"] = self._samples(small)
        drifted = {k: v for k, v in info.items() if k.endswith("max_abs_diff") and v > 1e-3}
        if drifted:  # an export that does not reproduce the model: say so, it is not an error of the run
            self.log(f"export: WARNING exported outputs differ from the model's: {drifted} (a model this sensitive "
                     "to round-off, e.g. a recurrent net with large weights, amplifies runtime differences)")
        self.log(f"export: compact {self.describe({k: info[k] for k in self.task.reported})}, "
                 f"{info['macs']:,} MACs -> {self.out / 'export'}")  # fmt: skip
        save_checkpoint(self.stage_path("export"), {"stage": "export", "info": info,
                                                     "seconds": time.perf_counter() - started})  # fmt: skip

    def _samples(self, small: nn.Module) -> dict[str, str]:
        """The same prompt continued by the dense baseline and the compact model (fixed seed)."""
        start, _ = self.load_stage("start")
        dense = compact(start, self.data.example).to(self.device)
        prompt = self.data.example[:, : max(1, self.config.block_length // 4)]
        return {name: sample_text(model, prompt, self.data.corpus, self.config.block_length, seed=self.config.seed)
                for name, model in (("dense", dense), ("compact", small))}  # fmt: skip

    def run_report(self) -> dict:
        return write_report(self)

    def run(self, stages: tuple[str, ...] = STAGES) -> None:
        """Run ``stages`` in order, skipping those already finished when resuming."""
        for stage in stages:
            if self.resume and self.done(stage):
                self.log(f"{stage}: already done, skipped")
                continue
            getattr(self, f"run_{stage}")()
