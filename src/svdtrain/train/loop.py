"""One epoch of training with the SVD regularizers, and evaluation."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from svdtrain.linalg import check_positive_int
from svdtrain.tasks import Classification, Task
from svdtrain.tasks.base import to_device
from svdtrain.train.distill import Distillation
from svdtrain.train.distributed import unwrapped
from svdtrain.train.regularization import Regularization
from svdtrain.train.step import StepLoss
from svdtrain.train.watch import DivergenceWatch, skips_non_finite

Batches = Iterable[Any]  # (inputs, targets) pairs, or what the task reads (a dict of tensors, ...)


EVALUATION_SEED = 0  # seeds what a task draws in evaluation (masked positions): metrics repeat exactly


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
    all_min: Callable[[int], int] | None = None,
    before_step: Callable[[int], None] | None = None,
    *,
    step_loss: StepLoss | None = None,
    check_every: int = 50,
) -> dict[str, float]:
    """Train one pass over ``batches``; returns the task's training metrics (default task:
    classification, giving mean loss and accuracy).

    With ``distillation`` the task loss is mixed with the teacher's soft targets; the
    reported loss stays the plain task loss so runs with and without compare. ``grad_clip`` > 0
    rescales the gradients to at most that total norm (recurrent nets need it; the paper's
    LSTM code clips at 0.25). ``reduce`` combines the statistics of several processes.
    ``precision="bf16"`` runs forward and loss under bfloat16 autocast. ``before_step(step)``
    runs before each step (the trainer sets the learning rate there). ``step_loss`` replaces
    the forward and loss built from those arguments (a compiled one, kept across epochs).

    With a fused optimizer (``fused=True``) no step reads a device value on the host:
    statistics add up on the device, and the loss (and gradient norm) are checked for NaN/inf
    every ``check_every`` steps and at the end (:class:`DivergenceWatch`), while the optimizer
    skips the update of a non-finite step on the device. Any other optimizer would step on
    NaN until the check, so with it the loss is checked every step, as a sync. ``all_min``
    (distributed runs) makes the processes agree on the first bad step, so all stop together.

    Each step's forward runs under ``torch.nn.utils.parametrize.cached()`` (a weight read twice
    is rebuilt once); the cache is dropped before the optimizer step, so do not call this
    inside a ``cached()`` block of your own: the weights would go stale after the first step.

    Raises:
        TrainingDiverged: the loss (or, when clipping, the gradients' norm) is NaN or inf; the
            message names the first such step and the first non-finite parameter. Do not save
            the model."""
    task = task or Classification()
    check_positive_int("check_every", check_every)
    model.train()
    core = unwrapped(model)  # the regularizers read the factors of the model itself, not of a DDP wrapper
    step_loss = step_loss or StepLoss(model, regularization, task, distillation, precision)
    step_loss.refresh()
    skips = skips_non_finite(optimizer)
    # An optimizer that cannot skip a step on the device would step on NaN until the check: check each step.
    watch = DivergenceWatch(device, check_every if skips else 1, norms=bool(grad_clip), all_min=all_min)
    sums: dict[str, torch.Tensor | float] = {}
    try:
        for step, batch in enumerate(batches):
            if before_step is not None:
                before_step(step)
            batch = task.prepare(to_device(batch, device))
            loss, outputs, task_loss = step_loss(batch, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(core.parameters(), grad_clip) if grad_clip else None
            watch.record(loss, norm, core)  # a full window is checked here, before this step's update
            if skips:  # distributed: every process skips where any one's loss made the averaged gradients NaN
                shared = norm if norm is not None or all_min is None else _gradient_norm(core)
                optimizer.found_inf = watch.found_inf(loss, shared)
            optimizer.step()
            regularization.after_step(core, optimizer)
            _add(sums, task.stats(outputs.detach(), task.targets(batch), task_loss.detach()))
        watch.check(core)
    finally:
        if skips and hasattr(optimizer, "found_inf"):
            del optimizer.found_inf  # a later step of the caller's own must not see a stale flag
    return task.summarize(reduce(_floats(sums)) if reduce else _floats(sums))


def _gradient_norm(model: nn.Module) -> torch.Tensor:
    """The total norm of the gradients, on the device (no sync)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


def _add(sums: dict, stats: dict) -> None:
    for key, value in stats.items():
        sums[key] = sums.get(key, 0) + value


def _floats(sums: dict) -> dict[str, float]:
    """The sums as Python floats, the device's read in one copy (one sync)."""
    tensors = {k: v for k, v in sums.items() if isinstance(v, torch.Tensor)}
    floats = {k: float(v) for k, v in sums.items() if k not in tensors}
    if tensors:
        floats.update(zip(tensors, torch.stack([v.float() for v in tensors.values()]).cpu().tolist()))
    return {k: floats[k] for k in sums}


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
    generator = torch.Generator(device).manual_seed(EVALUATION_SEED)  # the same masks (or other draws) every time
    with parametrize.cached():
        for batch in batches:
            batch = task.prepare(to_device(batch, device), generator)
            if task.size(batch) == 0:  # a process's empty share of a small last batch
                continue
            outputs, loss = task.step(model, batch)
            _add(sums, task.stats(outputs, task.targets(batch), loss))
    return task.summarize(reduce(_floats(sums)) if reduce else _floats(sums))


def evaluate(model: nn.Module, batches: Batches, device: torch.device | str = "cpu", task: Task | None = None) -> float:
    """The metric the task is judged on (classification: top-1 accuracy in [0, 1])."""
    task = task or Classification()
    return evaluate_metrics(model, batches, device, task)[task.metric]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Batches, max_batches: int = 50, device: torch.device | str = "cpu",
                          task: Task | None = None) -> None:  # fmt: skip
    """Re-estimate BatchNorm running statistics after pruning changed the layers feeding them.

    Pruning shifts every downstream activation distribution, so stale running means and
    variances cost far more accuracy than the pruned singular values themselves. Averages
    over up to ``max_batches`` batches (momentum=None: a plain cumulative mean), each read by
    ``task`` (default: classification's ``(inputs, targets)`` pairs).
    """
    task = task or Classification()
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
        for index, batch in enumerate(batches):
            if index >= max_batches:
                break
            task.forward(model, task.prepare(to_device(batch, device)))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
