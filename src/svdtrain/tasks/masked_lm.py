"""Masked language modelling (BERT's objective): 15% of the tokens are chosen, and the model,
reading the rest, predicts them; judged on the loss over the chosen tokens.

Of the chosen tokens 80% become the mask token, 10% a random token and 10% stay, as BERT's
recipe. The mask token is the id after the data's vocabulary (``classes``): a masked-LM model
has one more output than the data has tokens (``svdtrain.models`` tiny_bert adds it). The
batches are dicts, as Hugging Face models take them: ``input_ids`` and ``labels`` (-100 where
nothing is predicted)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from svdtrain.tasks.base import Task

IGNORED = -100  # labels of tokens not predicted (cross_entropy's and Hugging Face's convention)


class MaskedLanguageModeling(Task):
    name, metric, higher_is_better = "masked_lm", "loss", False
    reported, inputs = ("loss", "perplexity", "masked_accuracy"), "tokens"
    rate = 0.15  # the share of tokens chosen

    def prepare(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        if isinstance(batch, dict):
            return batch  # already masked
        if not self.classes:
            raise ValueError("masked_lm draws tokens from the vocabulary: give its size (task_named('masked_lm', V))")
        ids = batch[0]
        draw = torch.rand(ids.shape, generator=generator, device=ids.device)
        chosen = draw < self.rate
        masked = draw < self.rate * 0.8
        randomized = chosen & ~masked & (draw < self.rate * 0.9)
        noise = torch.randint(self.classes, ids.shape, generator=generator, device=ids.device)
        inputs = torch.where(masked, self.classes, torch.where(randomized, noise, ids))
        return {"input_ids": inputs, "labels": torch.where(chosen, ids, IGNORED)}

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["input_ids"])

    def targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["labels"]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Over the chosen tokens; a batch where none was chosen (tiny ones) gives 0, not NaN.
        total = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), ignore_index=IGNORED,
                                reduction="sum")  # fmt: skip
        return total / (targets != IGNORED).sum().clamp(min=1)

    def stats(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        chosen = targets != IGNORED
        count = chosen.sum()
        correct = ((outputs.argmax(-1) == targets) & chosen).sum()
        return {"loss_sum": loss.detach() * count, "correct": correct, "count": count}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        count = max(sums.get("count", 0), 1)
        loss = sums.get("loss_sum", 0.0) / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "masked_accuracy": sums.get("correct", 0) / count}
