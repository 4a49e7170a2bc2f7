"""Task: the seam between the training loop and what is being learned."""

from __future__ import annotations

import torch


class Task:
    """What a task says to the loop. Outputs are the model's (logits); targets what a batch holds.

    ``metric`` is the number a run is judged on (in reports and sweeps); ``higher_is_better``
    says which way it points. Evaluation sums per-batch ``stats`` and ``summarize`` turns
    the sums into metrics, so metrics are exact over a whole split, not means of batch means.
    """

    name: str = ""
    metric: str = ""
    higher_is_better: bool = True
    reported: tuple[str, ...] = ()  # the metrics a run records and reports for each stage

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
