"""Classification: cross-entropy over (B, C) logits, judged on top-1 accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from svdtrain.tasks.base import Task


class Classification(Task):
    name, metric, higher_is_better = "classification", "accuracy", True
    reported, inputs = ("accuracy",), "images"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def stats(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> dict[str, float]:
        count = targets.numel()
        return {"loss_sum": loss.detach() * count, "correct": (outputs.argmax(1) == targets).sum(), "count": count}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        count = max(sums.get("count", 0), 1)
        return {"loss": sums.get("loss_sum", 0.0) / count, "accuracy": sums.get("correct", 0) / count}
