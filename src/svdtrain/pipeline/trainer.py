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
from svdtrain.train.checkpoint import load_latest_good, load_matching, ranks_of, save_checkpoint, shrink_to
from svdtrain.pipeline.config import RunConfig
from svdtrain.train.distill import Distillation
from svdtrain.train.distributed import Distributed, unwrapped
from svdtrain.train.loop import evaluate_metrics, train_epoch
from svdtrain.train.optimizer import param_groups
from svdtrain.train.regularization import Regularization
from svdtrain.train.progress import format_eta, progress_bar
from svdtrain.pipeline.engine import cut_batches
from svdtrain.pipeline.run_data import Data
from svdtrain.pipeline.run_folder import STAGES, RunFolder
from svdtrain.train.schedule import decay_factor
from svdtrain.train.step import StepLoss
from svdtrain.train.svd_training import SVDTraining
from svdtrain.train.watch import TrainingDiverged, first_non_finite


class StageTrainer:
    """In a distributed run each process trains its share of every batch through DDP and
    evaluates its share of the test split; only rank 0 writes."""

    def __init__(self, config: RunConfig, data: Data, task: Task, device: torch.device, folder: RunFolder, *,
                 resume: bool, log: Callable[[str], None], dist: Distributed = Distributed()) -> None:  # fmt: skip
        self.config, self.data, self.task, self.device = config, data, task, device
        self.folder, self.resume, self.log, self.dist = folder, resume, log, dist
        if data is not None:
            self.train_batches = dist.shard(data.train)
            self.test_batches = dist.shard(data.test, every_example=True)

    def evaluation(self, model: nn.Module, *, alone: bool = False) -> dict[str, float]:
        """The task's reported metrics on the test (or validation) split: each process its share,
        summed, or with ``alone`` this process all of it (for work only rank 0 does)."""
        batches, shared = (self.data.test, False) if alone else (self.test_batches, self.dist.enabled)
        metrics = evaluate_metrics(unwrapped(model), batches, self.device, self.task,
                                   reduce=self.dist.sum if shared else None)  # fmt: skip
        return {key: metrics[key] for key in self.task.reported}

    def optimizer(self, model: nn.Module, lr: float, s_lr_scale: float = 1.0) -> torch.optim.Optimizer:
        """Weight decay for ordinary parameters only: U, s and Vh have their own regularizers,
        and decaying s would add an L2 pull that fights the chosen sparsity term. The singular
        values get their own group, at ``s_lr_scale`` times the learning rate."""
        o = self.config.optim
        groups = param_groups(model, lr, weight_decay=o.weight_decay, s_lr_scale=s_lr_scale)
        for group in groups:
            group["initial_lr"] = group["lr"]
        # fused: one kernel for all parameters, and it skips a non-finite step on the device
        if o.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, fused=True)
        return torch.optim.Adam(groups, lr=lr, fused=True)

    def _lr_setter(self, optimizer: torch.optim.Optimizer, epoch: int, epochs: int, steps: int,
                   lr_span: tuple[int, int] | None) -> Callable[[int], None]:  # fmt: skip
        """Sets each group's rate before the epoch's ``step``-th step (step decay, schedule.py),
        from its initial rate, so a rebuilt optimizer or a resumed stage lands on the same rate."""
        o = self.config.optim
        before, span = lr_span or (0, epochs)

        def set_lr(step: int) -> None:
            factor = decay_factor(o.lr_milestones, o.lr_gamma, (before + epoch) * steps + step, span, steps)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor

        return set_lr

    def fit(
        self, stage: str, model: nn.Module, epochs: int, regularization: Regularization | None = None,
        lr: float | None = None, distillation: Distillation | None = None, *, engine: SVDTraining | None = None,
        cuts: bool = False, lr_span: tuple[int, int] | None = None,
    ) -> list[dict]:  # fmt: skip
        """Train ``model`` in place for ``epochs`` (at ``lr``, default optim's); returns the history.

        ``engine`` (the method, :class:`SVDTraining`, on ``model``) gives the regularizers, the
        distillation and the singular values' rate, chooses the budget tail before each epoch,
        makes its gradual cuts after each where ``cuts`` (the optimizer follows them in place),
        and, while SVD training, adds the energy a cut to the target would keep to each epoch's row. Without one,
        ``regularization`` and ``distillation`` as given (a dense or baseline model).

        ``lr_span``, (epochs before this stage, epochs in all), places the stage in a learning-rate
        schedule it shares with other stages (schedule.py); None: the stage's own."""
        o = self.config.optim
        base_lr = lr or o.lr
        s_lr_scale = engine.s_lr_scale if engine is not None else 1.0
        optimizer = self.optimizer(model, base_lr, s_lr_scale)
        history: list[dict] = []
        ckpt = self.folder.checkpoint(stage)
        state = load_latest_good(ckpt, self.log) if self.resume else None
        stage_index = STAGES.index(stage) if stage in STAGES else len(STAGES)
        torch.manual_seed(self.config.run.seed * 1_000 + stage_index)  # dropout: the same draws, resumed or not
        if state is not None:
            shrink_to(model, state.get("ranks", {}))  # pruned during the stage: the saved shapes first
            load_matching(model, state["model"], str(ckpt))
            if engine is not None:
                _resume_engine(engine, state, cuts)
            optimizer = self.optimizer(model, base_lr, s_lr_scale)
            optimizer.load_state_dict(_upgraded(state["optimizer"], model))
            if "rng" in state:  # dropout draws on as if never interrupted
                torch.set_rng_state(state["rng"])
            history = state["history"]
            self.log(f"{stage}: resuming after epoch {len(history)}/{epochs}")
        with self.dist.synchronized_batchnorm(model, self.device):  # one global batch on every backend
            net = step_loss = None  # built once the first epoch's tails are set, again after a cut
            for epoch in range(len(history), epochs):
                start = time.perf_counter()
                set_lr = self._lr_setter(optimizer, epoch, epochs, len(self.train_batches), lr_span)
                if engine is not None:
                    engine.refresh_tails()  # the values the target would drop now (a resumed run sees the same model)
                    regularization, distillation = engine.regularization, engine.distillation
                regularization = regularization or Regularization()
                if step_loss is None:
                    net, step_loss = self._step(model, regularization, distillation)
                self.train_batches.set_epoch(stage_index * 100_000 + epoch)  # each stage/epoch: its own fixed order
                batches = self.train_batches
                if self.dist.is_main:
                    batches = progress_bar(batches, len(batches), f"{stage} {epoch + 1}/{epochs}")
                try:
                    metrics = train_epoch(net, batches, optimizer, regularization, self.device, distillation, self.task,
                                          o.grad_clip, reduce=self.dist.sum if self.dist.enabled else None,
                                          all_min=self.dist.min if self.dist.enabled else None,
                                          before_step=set_lr, step_loss=step_loss)  # fmt: skip
                except TrainingDiverged as diverged:
                    kept = f"; {ckpt.name} keeps epoch {len(history)}" if history else ""
                    raise TrainingDiverged(f"{stage} epoch {epoch + 1}: {diverged}{kept}") from None
                lr_now = optimizer.param_groups[0]["lr"]
                if cuts and self._cut(engine, model, optimizer):
                    step_loss = None  # new factors: regroup and re-wrap them
                test = self.evaluation(model)
                energy = engine.target_energy() if engine is not None and not engine.pruned else None
                seconds = time.perf_counter() - start
                history.append({"stage": stage, "epoch": epoch + 1, "lr": lr_now,
                                **{f"train_{k}": v for k, v in metrics.items()},
                                **{f"test_{k}": v for k, v in test.items()},
                                **({"target_energy": energy} if energy is not None else {}),
                                "seconds": round(seconds, 3)})  # fmt: skip
                non_finite = first_non_finite(model, gradients=False)
                if non_finite is not None:  # never save (and rotate out the good one) a diverged model
                    raise TrainingDiverged(f"{stage} epoch {epoch + 1}: training diverged: {non_finite}"
                                           + (f"; {ckpt.name} keeps epoch {len(history) - 1}" if len(history) > 1 else ""))
                if self.dist.is_main:
                    save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                           "ranks": ranks_of(model), "history": history,
                                           "rng": torch.get_rng_state(),
                                           **({"svd": engine.state_dict()} if engine is not None else {})},
                                    keep_previous=True)  # fmt: skip
                    self._write_metrics(stage, history)
                eta = format_eta(seconds * (epochs - epoch - 1))
                metric = self.task.metric
                self.log(f"{stage} {epoch + 1}/{epochs}  loss {metrics['loss']:.4f}  train {metrics[metric]:.4f}  "
                         f"test {test[metric]:.4f}  lr {lr_now:.2e}  {seconds:.0f}s  eta {eta}")  # fmt: skip
            return history

    def _cut(self, engine: SVDTraining, model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
        """The engine's next gradual cut, if one is left, on the batches fixed for it; whether any
        parameter was replaced (the step is then rebuilt)."""
        if not engine.cuts_left:
            return False
        before = {id(p) for p in model.parameters()}
        calibration, batchnorm = cut_batches(self.config, self.data, engine.cuts + 1)
        engine.gradual_cut(optimizer, calibration, bn_batches=batchnorm)
        return {id(p) for p in model.parameters()} != before

    def _step(self, model: nn.Module, regularization: Regularization,
              distillation: Distillation | None) -> tuple[nn.Module, StepLoss]:  # fmt: skip
        """The model in DDP when distributed, and its step's forward and loss, compiled if asked.
        Built again after pruning: DDP holds the parameters it was built with, the regularizers
        group the factors, a compiled step guards on their shapes."""
        o = self.config.optim
        net = self.dist.wrap(model, self.device)
        if o.compile:  # the last stage's or cut's graphs never match again: free them, and the recompile limit
            torch.compiler.reset()
        return net, StepLoss(net, regularization, self.task, distillation, o.precision,
                             compile=o.compile_mode if o.compile else None, channels_last=o.channels_last)

    def _write_metrics(self, stage: str, history: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.folder.metrics(stage), buffer.getvalue())


def _resume_engine(engine: SVDTraining, state: dict, cuts: bool) -> None:
    """The engine's state as the epoch checkpoint saved it; a checkpoint from before it was saved
    there counts the cuts made by the epochs done (one a gradual epoch, up to gradual_cuts)."""
    if "svd" in state:
        engine.load_state_dict(state["svd"])
    elif cuts:
        engine.cuts = min(len(state["history"]), engine.config.gradual_cuts)


def _upgraded(saved: dict, model: nn.Module) -> dict:
    """An optimizer state dict from before s had its own group (two groups: decayed, factors)
    split into this version's three (decayed, U and Vh, s); others as they are."""
    groups = saved["param_groups"]
    if len(groups) != 2 or not factored_weights(model):
        return saved
    singular = {id(handle.s) for handle in factored_weights(model).values()}
    factor_params = [p for p in model.parameters() if id(p) in {id(q) for h in factored_weights(model).values()
                                                                  for q in h.factors}]  # fmt: skip
    if len(factor_params) != len(groups[1]["params"]):
        return saved
    vectors = [i for i, p in zip(groups[1]["params"], factor_params) if id(p) not in singular]
    values = [i for i, p in zip(groups[1]["params"], factor_params) if id(p) in singular]
    group = {k: v for k, v in groups[1].items() if k != "params"}
    split = [groups[0], {**group, "params": vectors}, {**group, "params": values, "initial_lr": group["lr"]}]
    split[1].setdefault("initial_lr", group["lr"])
    split[0] = {**groups[0], "initial_lr": groups[0].get("initial_lr", groups[0]["lr"])}
    return {**saved, "param_groups": split}

