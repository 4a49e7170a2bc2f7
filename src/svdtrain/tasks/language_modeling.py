"""Language modelling: next-token cross-entropy over (B, T, V) logits, judged on the loss.

Reported with it: perplexity exp(loss) and bits per token loss / ln 2 (bits per character
for a character-level corpus)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from svdtrain.tasks.base import Task


class LanguageModeling(Task):
    name, metric, higher_is_better = "language_modeling", "loss", False
    reported, inputs, generates = ("loss", "perplexity", "bits_per_token"), "tokens", True

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))  # over B*T tokens

    def stats(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> dict[str, float]:
        count = targets.numel()
        return {"loss_sum": loss.detach() * count, "count": count}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums.get("loss_sum", 0.0) / max(sums.get("count", 0), 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bits_per_token": loss / math.log(2)}
