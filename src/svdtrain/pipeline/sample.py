"""Text samples from a language model, for the report: the same prompt continued by the dense
and the compact model shows what a loss difference means."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def sample_text(
    model: nn.Module, prompt: torch.Tensor, corpus, context: int, *, tokens: int = 200, temperature: float = 0.8,
    seed: int = 0,
) -> str:  # fmt: skip
    """``prompt`` (1, P) token ids continued by ``tokens`` sampled tokens (softmax at
    ``temperature``, a fixed seed), decoded with ``corpus``; the model sees at most the last
    ``context`` tokens."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=prompt.device).manual_seed(seed)
    ids = prompt
    for _ in range(tokens):
        logits = model(ids[:, -context:])[:, -1] / temperature  # (1, V)
        next_id = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=generator)  # (1, 1)
        ids = torch.cat([ids, next_id], 1)
    model.train(was_training)
    return corpus.decode(ids[0].tolist())
