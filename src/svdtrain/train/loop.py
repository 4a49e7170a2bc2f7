"""One epoch of training with the SVD regularizers, and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from svdtrain.linalg import check_positive_int, check_sparsity_kind
from svdtrain.surgery import factored_weights, orthogonality_loss, sparsity_loss
from svdtrain.surgery.losses import soft_threshold_, tail_l1_loss
from svdtrain.tasks import Classification, Task
from svdtrain.train.distill import Distillation
from svdtrain.train.distributed import unwrapped

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class TrainingDiverged(ArithmeticError):
    """The loss or a gradient became NaN or inf; the message names the step and the weight."""


def first_non_finite(model: nn.Module, *, gradients: bool = True) -> str | None:
    """Which parameter (or, with ``gradients``, its gradient) holds NaN or inf first, in
    words; None when all are finite."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            return f"parameter {name!r} holds NaN or inf"
        if gradients and param.grad is not None and not torch.isfinite(param.grad).all():
            return f"the gradient of {name!r} holds NaN or inf"
    return None


def _which_non_finite(model: nn.Module) -> str:
    return first_non_finite(model) or "every parameter is finite (the inputs or the loss overflowed)"


@dataclass(frozen=True)
class Regularization:
    """Weights of the paper's two terms; 0 turns a term off (its cost too).

    ``every`` > 1 is lazy regularization (as in StyleGAN2): the terms are computed on one
    step in ``every``, weighted by ``every``, so their average pull is unchanged. Their cost
    does not shrink with the batch (the orthogonality term multiplies r x r Gram matrices),
    so at small batches on large layers it can rival the network's own forward pass.

    ``scales`` weighs each weight's sparsity term by name (e.g. by the MACs one of its
    singular values costs, so the pull falls where a MACs budget is spent). ``proximal``
    (L1 only) applies the L1 term as a soft-threshold of s after each optimizer step, by the
    s learning rate times its weight, instead of as a gradient: it reaches exact zeros.
    ``tails`` ({weight name: bool mask over s}, updated in place by the caller) turns the
    sparsity term into an L1 term on the masked values only: those a MACs budget will drop.
    """

    ortho_weight: float = 0.0  # lambda_o: singular-vector orthogonality
    sparsity_weight: float = 0.0  # lambda_s: singular-value sparsity
    sparsity_kind: str = "hoyer"  # l1 | hoyer | hoyer_square
    every: int = 1
    scales: dict[str, float] | None = field(default=None, hash=False)
    proximal: bool = False
    tails: dict[str, torch.Tensor] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        for name in ("ortho_weight", "sparsity_weight"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        check_positive_int("regularize every", self.every)
        check_sparsity_kind(self.sparsity_kind)
        if self.proximal and self.sparsity_kind != "l1" and self.tails is None:
            raise ValueError(f"a proximal sparsity step needs sparsity kind l1, got {self.sparsity_kind!r}")

    def loss(self, model: nn.Module, step: int = 0) -> torch.Tensor | float:
        total: torch.Tensor | float = 0.0
        if step % self.every:
            return total
        if self.ortho_weight:
            total = total + self.every * self.ortho_weight * orthogonality_loss(model)
        if self.sparsity_weight and not self.proximal:
            term = (tail_l1_loss(model, self.tails, self.scales) if self.tails is not None
                    else sparsity_loss(model, self.sparsity_kind, self.scales))  # fmt: skip
            total = total + self.every * self.sparsity_weight * term
        return total

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """The proximal L1 step, after the optimizer's (nothing otherwise)."""
        if not (self.proximal and self.sparsity_weight):
            return
        lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        scales = self.scales or {}
        soft_threshold_(model, {name: lr_of.get(id(w.s), 0.0) * self.sparsity_weight * scales.get(name, 1.0)
                                for name, w in factored_weights(model).items()}, self.tails)  # fmt: skip


def train_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    regularization: Regularization = Regularization(),
    device: torch.device | str = "cpu",
    distillation: Distillation | None = None,
    task: Task | None = None,
    grad_clip: float = 0.0,
    reduce: Callable[[dict[str, float]], dict[str, float]] | None = None,
    precision: str = "fp32",
    all_true: Callable[[bool], bool] | None = None,
    before_step: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Train one pass over ``batches``; returns the task's training metrics (default task:
    classification, giving mean loss and accuracy).

    With ``distillation`` the task loss is mixed with the teacher's soft targets; the
    reported loss stays the plain task loss so runs with and without compare. ``grad_clip`` > 0
    rescales the gradients to at most that total norm (recurrent nets need it; the paper's
    LSTM code clips at 0.25). ``reduce`` combines the statistics of several processes.
    ``precision="bf16"`` runs forward and loss under bfloat16 autocast. ``all_true`` makes the
    processes of a distributed run agree each step that every loss is finite, so all stop together.
    ``before_step(step)`` runs before each step (the trainer sets the learning rate there).

    Each step's forward runs under ``torch.nn.utils.parametrize.cached()``: a factored weight
    read more than once in one forward (a module called twice, a weight its parent reads too)
    is rebuilt from U, s, Vh once, and gradients flow through both reads. The cache is dropped
    before the optimizer step, so do not call this inside a ``cached()`` block of your own:
    the weights would then go stale after the first step.

    Raises:
        TrainingDiverged: the loss (or, when clipping, the gradients' norm) is NaN or inf; the
            message names the step and the first non-finite parameter. The model is left as
            it was when that was seen: do not save it."""
    task = task or Classification()
    model.train()
    core = unwrapped(model)  # the regularizers read the factors of the model itself, not of a DDP wrapper
    sums: dict[str, float] = {}
    for step, (inputs, targets) in enumerate(batches):
        if before_step is not None:
            before_step(step)
        inputs, targets = inputs.to(device), targets.to(device)
        with parametrize.cached(), torch.autocast(inputs.device.type, torch.bfloat16, enabled=precision == "bf16"):
            outputs = model(inputs)
            task_loss = task.loss(outputs.float(), targets)
            fit_loss = distillation.loss(inputs, outputs, task_loss) if distillation else task_loss
            loss = fit_loss + regularization.loss(core, step)
        finite = bool(torch.isfinite(loss.detach()))
        if not (all_true(finite) if all_true else finite):
            where = "" if all_true is None else (" here" if not finite else " in another process")
            raise TrainingDiverged(f"training diverged at step {step + 1}: the loss is not finite{where}; "
                                   f"{_which_non_finite(core)} (try a lower lr or grad_clip)")  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(core.parameters(), grad_clip)
            if not torch.isfinite(norm):
                raise TrainingDiverged(f"training diverged at step {step + 1}: the gradient norm is {float(norm):g}; "
                                       f"{_which_non_finite(core)} (try a lower lr)")  # fmt: skip
        optimizer.step()
        regularization.after_step(core, optimizer)
        _add(sums, task.stats(outputs.detach(), targets, task_loss.detach()))
    return task.summarize(reduce(sums) if reduce else sums)


def _add(sums: dict[str, float], stats: dict[str, float]) -> None:
    for key, value in stats.items():
        sums[key] = sums.get(key, 0) + value


@torch.no_grad()
def evaluate_metrics(
    model: nn.Module, batches: Batches, device: torch.device | str = "cpu", task: Task | None = None,
    reduce: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> dict[str, float]:
    """The task's metrics over all of ``batches`` (default task: classification); ``reduce``
    combines the summed statistics of several processes, each with its shard of the batches.

    The weights do not change here, so each factored weight is rebuilt from U, s, Vh once for
    all batches (``parametrize.cached()``), not once per batch."""
    task = task or Classification()
    model.eval()
    sums: dict[str, float] = {}
    with parametrize.cached():
        for inputs, targets in batches:
            if len(inputs) == 0:  # a process's empty share of a small last batch
                continue
            outputs = model(inputs.to(device))
            targets = targets.to(device)
            _add(sums, task.stats(outputs, targets, task.loss(outputs, targets)))
    return task.summarize(reduce(sums) if reduce else sums)


def evaluate(model: nn.Module, batches: Batches, device: torch.device | str = "cpu", task: Task | None = None) -> float:
    """The metric the task is judged on (classification: top-1 accuracy in [0, 1])."""
    task = task or Classification()
    return evaluate_metrics(model, batches, device, task)[task.metric]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Batches, max_batches: int = 50, device: torch.device | str = "cpu") -> None:
    """Re-estimate BatchNorm running statistics after pruning changed the layers feeding them.

    Pruning shifts every downstream activation distribution, so stale running means and
    variances cost far more accuracy than the pruned singular values themselves. Averages
    over up to ``max_batches`` batches (momentum=None: a plain cumulative mean).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    with parametrize.cached():  # the weights are fixed here: rebuild each factored one once
        for index, (inputs, _) in enumerate(batches):
            if index >= max_batches:
                break
            model(inputs.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
