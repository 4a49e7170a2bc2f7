"""Task: the seam between the training loop and what is being learned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def to_device(batch: Any, device: torch.device | str | None, dtype: torch.dtype | None = None) -> Any:
    """``batch`` (a tensor, or tuples, lists and mappings of them, e.g. a Hugging Face dict) on
    ``device``, its floating tensors in ``dtype`` where given (token ids stay integers)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, dtype if batch.is_floating_point() else None, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device, dtype) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(value, device, dtype) for value in batch)
    return batch


def tensors_of(batch: Any) -> list[torch.Tensor]:
    """The tensors of a batch at its top level: itself, or a tuple's, list's or mapping's values."""
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (tuple, list)) else (batch,)
    return [value for value in values if isinstance(value, torch.Tensor)]


class Task:
    """What a task says to the loop. A batch is whatever the data yields (default: an
    ``(inputs, targets)`` pair; a dict works where ``forward`` and ``targets`` read it);
    outputs are the model's (logits).

    ``metric`` is the number a run is judged on (in reports and sweeps); ``higher_is_better``
    says which way it points. Evaluation sums per-batch ``stats`` and ``summarize`` turns
    the sums into metrics, so metrics are exact over a whole split, not means of batch means.
    ``classes`` is what the data's labels or tokens range over (a vocabulary's size).
    """

    name: str = ""
    metric: str = ""
    higher_is_better: bool = True
    reported: tuple[str, ...] = ()  # the metrics a run records and reports for each stage
    inputs: str = ""  # what the model reads: "images" or "tokens" (the pipeline matches data and models to it)
    generates: bool = False  # whether the model continues text (the report then samples from it)

    def __init__(self, classes: int = 0) -> None:
        self.classes = classes

    def prepare(self, batch: Any, generator: torch.Generator | None = None) -> Any:
        """The batch as the model and its teacher both see it (masking, for instance), made once
        per step; ``generator`` draws any randomness (evaluation passes a seeded one)."""
        return batch

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The model's outputs (logits) for a prepared batch."""
        return model(batch[0])

    def targets(self, batch: Any) -> torch.Tensor:
        return batch[1]

    def size(self, batch: Any) -> int:
        """Examples in the batch (0: a process's empty share of a small last batch)."""
        return len(self.targets(batch))

    def step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(outputs, mean task loss)`` of a prepared batch; the loss in float32 under autocast."""
        outputs = self.forward(model, batch)
        return outputs, self.loss(outputs.float(), self.targets(batch))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean task loss of a batch."""
        raise NotImplementedError

    def stats(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> dict[str, torch.Tensor | int]:
        """Additive statistics of one batch (sums and counts): device tensors, so the training
        loop adds them up without reading them back each step."""
        raise NotImplementedError

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Metrics from the summed statistics of many batches."""
        raise NotImplementedError

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` is better than ``b``."""
        return a > b if self.higher_is_better else a < b
