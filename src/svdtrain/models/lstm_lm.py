"""The paper's LSTM language model (its official code follows PyTorch's word_language_model
example): embedding, stacked LSTM, linear decoder, dropout between them, optional tying."""

from __future__ import annotations

import torch
from torch import nn


class LSTMLanguageModel(nn.Module):
    """ids (B, T) -> next-token logits (B, T, vocab).

    The official WikiText-2 setting is ``embedding=hidden=1500, layers=2, dropout=0.65``.
    ``tie=True`` shares the decoder weight with the embedding (needs embedding == hidden);
    svdtrain then leaves that weight dense and says so.
    """

    def __init__(
        self, vocab: int, *, embedding: int = 256, hidden: int = 512, layers: int = 2, dropout: float = 0.2,
        tie: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        if tie and embedding != hidden:
            raise ValueError(f"tying needs embedding == hidden, got {embedding} and {hidden}")
        self.embed = nn.Embedding(vocab, embedding)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embedding, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                            batch_first=True)  # fmt: skip
        self.decoder = nn.Linear(hidden, vocab)
        if tie:
            self.decoder.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.embed(ids))  # (B, T, embedding)
        y, _ = self.lstm(x)  # (B, T, hidden)
        return self.decoder(self.drop(y))  # (B, T, vocab)
