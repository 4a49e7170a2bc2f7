"""One stage's training: epochs with a per-epoch checkpoint, so a resumed stage ends exactly
where an uninterrupted one would."""

from __future__ import annotations

import csv
import io
import time
from typing import Callable

import torch
from torch import nn

from svdtrain.io import atomic_write_text
from svdtrain.surgery import factored_weights
from svdtrain.tasks import Task
from svdtrain.train.checkpoint import load_checkpoint, load_matching, save_checkpoint
from svdtrain.train.config import RunConfig
from svdtrain.train.distill import Distillation
from svdtrain.train.loop import Regularization, evaluate_metrics, train_epoch
from svdtrain.train.progress import format_eta, progress_bar
from svdtrain.train.run_data import Data
from svdtrain.train.run_folder import STAGES, RunFolder


class Trainer:
    def __init__(self, config: RunConfig, data: Data, task: Task, device: torch.device, folder: RunFolder, *,
                 resume: bool, log: Callable[[str], None]) -> None:  # fmt: skip
        self.config, self.data, self.task, self.device = config, data, task, device
        self.folder, self.resume, self.log = folder, resume, log

    def evaluation(self, model: nn.Module) -> dict[str, float]:
        """The task's reported metrics on the test (or validation) split."""
        metrics = evaluate_metrics(model, self.data.test, self.device, self.task)
        return {key: metrics[key] for key in self.task.reported}

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """Weight decay for ordinary parameters only: U, s and Vh have their own regularizers,
        and decaying s would add an L2 pull that fights the chosen sparsity term."""
        o = self.config.optim
        factors = {id(p) for handle in factored_weights(model).values() for p in handle.factors}
        groups = [
            {"params": [p for p in model.parameters() if id(p) not in factors], "weight_decay": o.weight_decay},
            {"params": [p for p in model.parameters() if id(p) in factors], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        if o.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=o.momentum)
        return torch.optim.Adam(groups, lr=lr)

    def fit(
        self, stage: str, model: nn.Module, epochs: int, regularization: Regularization, lr: float | None = None,
        distillation: Distillation | None = None,
    ) -> list[dict]:  # fmt: skip
        """Train ``model`` in place for ``epochs`` (at ``lr``, default optim's); returns the history."""
        o = self.config.optim
        optimizer = self.optimizer(model, lr or o.lr)
        milestones = sorted({round(m * epochs) if m < 1 else int(m) for m in o.lr_milestones} - {0})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, o.lr_gamma)
        history: list[dict] = []
        ckpt = self.folder.checkpoint(stage)
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
                                  o.grad_clip)  # fmt: skip
            lr_now = optimizer.param_groups[0]["lr"]
            scheduler.step()
            test = self.evaluation(model)
            seconds = time.perf_counter() - start
            history.append({"stage": stage, "epoch": epoch + 1, "lr": lr_now,
                            **{f"train_{k}": v for k, v in metrics.items()},
                            **{f"test_{k}": v for k, v in test.items()}, "seconds": round(seconds, 3)})  # fmt: skip
            save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(), "history": history})  # fmt: skip
            self._write_metrics(stage, history)
            eta = format_eta(seconds * (epochs - epoch - 1))
            metric = self.task.metric
            self.log(f"{stage} {epoch + 1}/{epochs}  loss {metrics['loss']:.4f}  train {metrics[metric]:.4f}  "
                     f"test {test[metric]:.4f}  lr {lr_now:.2e}  {seconds:.0f}s  eta {eta}")  # fmt: skip
        return history

    def _write_metrics(self, stage: str, history: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.folder.metrics(stage), buffer.getvalue())
