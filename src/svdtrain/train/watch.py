"""Divergence caught without a host-device sync every step.

Reading a device value on the host (``bool(loss.isfinite())``, ``loss.item()``) makes the
host wait for the GPU each step, so the next step's kernels are not queued while this one's
run. The watch keeps each step's loss (and gradient norm) in a device buffer and reads the
window every N steps and at the end of an epoch, once. Meanwhile a fused optimizer skips,
on the device, each update whose loss or norm is not finite (its ``found_inf``, as
``torch.amp.GradScaler`` uses it), so the model at the check is the last finite one.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

NO_STEP = 2**62


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


def skips_non_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` takes a ``found_inf`` flag and skips its update on the device."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False) and optimizer.defaults.get("fused"))


class DivergenceWatch:
    """Records each step's loss and gradient norm on the device; :meth:`check` reads them.

    ``every``: the steps between checks. ``all_min`` (distributed runs) takes this process's
    first bad step and returns the smallest over all processes, so every process stops at
    the same check.
    """

    def __init__(self, device: torch.device | str, every: int = 50, *, norms: bool = False,
                 all_min: Callable[[int], int] | None = None) -> None:  # fmt: skip
        self.every, self.all_min = every, all_min
        self.losses = torch.zeros(every, device=device)
        self.norms = torch.zeros(every, device=device) if norms else None
        self.start = self.count = 0  # the window's first step, and the steps recorded in it

    @staticmethod
    def found_inf(loss: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
        """1.0 where this step's update must be skipped, else 0.0 (a device scalar)."""
        finite = torch.isfinite(loss.detach()) if norm is None else torch.isfinite(loss.detach()) & torch.isfinite(norm)
        return (~finite).float()

    def record(self, loss: torch.Tensor, norm: torch.Tensor | None, model: nn.Module) -> None:
        """Keep this step's values; check when the window is full."""
        self.losses[self.count] = loss.detach()
        if self.norms is not None:
            self.norms[self.count] = norm
        self.count += 1
        if self.count == self.every:
            self.check(model)

    def check(self, model: nn.Module) -> None:
        """Raise :class:`TrainingDiverged` naming the first bad step of the window (in any
        process); start a new window otherwise. One sync."""
        if not self.count and self.all_min is None:
            return
        bad = ~torch.isfinite(self.losses[: self.count])
        if self.norms is not None:
            bad = bad | ~torch.isfinite(self.norms[: self.count])
        index = int(torch.where(bad.any(), bad.int().argmax(), -1)) if self.count else -1
        mine = NO_STEP if index < 0 else self.start + index
        first = self.all_min(mine) if self.all_min is not None else mine
        self.start, self.count = self.start + self.count, 0
        if first == NO_STEP:
            return
        loss_bad = first != mine or not torch.isfinite(self.losses[index])
        # a non-finite loss: which parameter made it (its gradients follow from it); a non-finite
        # norm with a finite loss: which gradient overflowed
        which = (first_non_finite(model, gradients=not loss_bad)
                 or "every parameter is finite (the inputs or the loss overflowed)")  # fmt: skip
        if first != mine:
            raise TrainingDiverged(f"training diverged at step {first + 1}: the loss is not finite in another "
                                   f"process; {which} (try a lower lr or grad_clip)")  # fmt: skip
        where = "" if self.all_min is None else " here"
        if loss_bad:
            raise TrainingDiverged(f"training diverged at step {first + 1}: the loss is not finite{where}; "
                                   f"{which} (try a lower lr or grad_clip)")  # fmt: skip
        raise TrainingDiverged(f"training diverged at step {first + 1}: the gradient norm is "
                               f"{float(self.norms[index]):g}; {which} (try a lower lr)")  # fmt: skip
