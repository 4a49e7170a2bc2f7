"""The forward half of a training step: the model, the task's loss, distillation and the
regularizers, as one callable that ``torch.compile`` can capture whole."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from svdtrain.tasks import Classification, Task
from svdtrain.train.distill import Distillation
from svdtrain.train.distributed import unwrapped
from svdtrain.train.regularization import Regularization

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class StepLoss:
    """``(inputs, targets, regularize) -> (loss, outputs, task_loss)`` for ``model``.

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
        self.terms = regularization.bind(unwrapped(model))
        self.every = regularization.every
        self.mode, self.channels_last = compile, channels_last
        self._forward = torch.compile(self._eager, mode=compile, dynamic=False) if compile else self._eager

    def refresh(self) -> None:
        """Read what the caller updates in place between epochs (the regularizers' tails)."""
        if self.terms is not None:
            self.terms.refresh()

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, step: int = 0):
        if self.mode in ("reduce-overhead", "max-autotune") and inputs.is_cuda:  # the modes with CUDA graphs
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are done with
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self._forward(inputs, targets, self.terms is not None and step % self.every == 0)

    def _eager(self, inputs: torch.Tensor, targets: torch.Tensor, regularize: bool):
        with parametrize.cached(), torch.autocast(inputs.device.type, torch.bfloat16, enabled=self.bf16):
            outputs = self.model(inputs)
            task_loss = self.task.loss(outputs.float(), targets)
            loss = self.distillation.loss(inputs, outputs, task_loss) if self.distillation else task_loss
            if regularize:
                loss = loss + self.terms()
        return loss, outputs, task_loss
