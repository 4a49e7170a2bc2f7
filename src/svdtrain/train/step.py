"""The forward half of a training step: the model, the task's loss, distillation and the
regularizers, as one callable that ``torch.compile`` can capture whole."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from svdtrain.tasks import Classification, Task
from svdtrain.tasks.base import tensors_of
from svdtrain.train.distill import Distillation
from svdtrain.train.distributed import unwrapped
from svdtrain.train.regularization import Regularization

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class StepLoss:
    """``(batch, step) -> (loss, outputs, task_loss)`` for ``model``, the batch read by the task.

    The forward runs under ``parametrize.cached()``: a factored weight read more than once in
    one forward is rebuilt from U, s, Vh once, and gradients flow through both reads. The
    regularizers read the factors of the model itself (not of a DDP wrapper), grouped once
    here: build a new StepLoss after pruning replaced factors.

    ``compile`` (a ``torch.compile`` mode, e.g. ``"default"``; None: eager) captures forward,
    loss and regularizers in one graph, and AOTAutograd the backward; ``"reduce-overhead"``
    replays it as CUDA graphs on a GPU. Shapes are static: a last, smaller batch compiles
    (or records) one more graph, once. ``channels_last`` passes image batches in NHWC
    layout, which convolutions run faster in (oneDNN on CPUs, cuDNN with tensor cores).
    """

    def __init__(self, model: nn.Module, regularization: Regularization = Regularization(), task: Task | None = None,
                 distillation: Distillation | None = None, precision: str = "fp32",
                 compile: str | None = None, channels_last: bool = False) -> None:  # fmt: skip
        if compile is not None and compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {compile!r}; valid modes are {', '.join(COMPILE_MODES)}")
        self.model, self.task, self.distillation = model, task or Classification(), distillation
        self.bf16 = precision == "bf16"
        self.terms, self.regularization = regularization.bind(unwrapped(model)), regularization
        self.mode, self.channels_last = compile, channels_last
        self._forward = torch.compile(self._eager, mode=compile, dynamic=False) if compile else self._eager

    def refresh(self) -> None:
        """Read what the caller updates in place between epochs (the regularizers' tails)."""
        if self.terms is not None:
            self.terms.refresh()

    def __call__(self, batch: Any, step: int = 0):
        """``batch``: one prepared batch (``Task.prepare``), on the model's device."""
        if self.mode in ("reduce-overhead", "max-autotune") and tensors_of(batch)[0].is_cuda:  # CUDA-graph modes
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are done with
        if self.channels_last and isinstance(batch, (tuple, list)) and batch[0].dim() == 4:
            batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
        return self._forward(batch, self.terms is not None and self.regularization.due(step))

    def _eager(self, batch: Any, regularize: bool):
        device = tensors_of(batch)[0].device.type  # the batch's, as the model's: no lookup each step
        with parametrize.cached(), torch.autocast(device, torch.bfloat16, enabled=self.bf16):
            outputs, task_loss = self.task.step(self.model, batch)
            loss = task_loss
            if self.distillation:
                with torch.no_grad():
                    teacher = self.task.forward(self.distillation.teacher, batch)
                loss = self.distillation.mix(teacher, outputs, task_loss)
            if regularize:
                loss = loss + self.terms()
        return loss, outputs, task_loss
