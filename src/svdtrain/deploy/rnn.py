"""StackedRNN: a multi-layer LSTM/GRU/RNN whose layers may read their input through a thin
projection, the deployed form of a recurrent net with low-rank input-to-hidden weights.

nn.LSTM cannot take a factored W_ih, but W_ih x = (U diag(s)) (Vh x): a Linear(in, r)
followed by a one-layer LSTM whose input size is r computes the same gates. Layers are run
one by one (each still in torch's fused kernel), so a projection can sit between them. The
recurrent matrix W_hh stays dense: no fused kernel takes it factored, and a per-step Python
loop costs more than the MACs it saves.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class StackedRNN(nn.Module):
    """Same call and outputs as the multi-layer unidirectional nn.GRU / nn.RNN it replaces:
    ``forward(input, hx=None)`` -> ``(output, h_n)``. :class:`StackedLSTM` for LSTMs."""

    def __init__(self, layers: list[nn.RNNBase], projections: list[nn.Module], dropout: float = 0.0) -> None:
        super().__init__()
        if len(layers) != len(projections) or any(layer.num_layers != 1 or layer.bidirectional for layer in layers):
            raise ValueError("StackedRNN takes one-layer unidirectional RNNs, each with a projection (or Identity)")
        self.layers = nn.ModuleList(layers)
        self.projections = nn.ModuleList(projections)
        self.dropout = dropout
        # What code around an nn.LSTM often reads (e.g. to build initial states).
        self.batch_first = layers[0].batch_first
        self.hidden_size, self.num_layers, self.bidirectional = layers[0].hidden_size, len(layers), False

    def _between(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if index < len(self.layers) - 1 and self.dropout > 0:
            return nn.functional.dropout(x, self.dropout, self.training)
        return x

    def forward(self, input: torch.Tensor, hx: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        h_all: list[torch.Tensor] = []
        x = input  # (T, B, in), (B, T, in) when batch_first, or (T, in) unbatched
        for index, (projection, layer) in enumerate(zip(self.projections, self.layers)):
            x = projection(x)  # (..., r)
            x, h = layer(x, None if hx is None else hx[index : index + 1])  # (..., hidden)
            h_all.append(h)
            x = self._between(x, index)
        return x, torch.cat(h_all, 0)  # h_n: (num_layers, [B,] hidden)


class StackedLSTM(StackedRNN):
    """Same call and outputs as the multi-layer unidirectional nn.LSTM it replaces:
    ``forward(input, (h_0, c_0)=None)`` -> ``(output, (h_n, c_n))``."""

    def forward(  # type: ignore[override]
        self, input: torch.Tensor, hx: Optional[tuple[torch.Tensor, torch.Tensor]] = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h_all: list[torch.Tensor] = []
        c_all: list[torch.Tensor] = []
        x = input  # (T, B, in), (B, T, in) when batch_first, or (T, in) unbatched
        for index, (projection, layer) in enumerate(zip(self.projections, self.layers)):
            x = projection(x)  # (..., r)
            state: Optional[tuple[torch.Tensor, torch.Tensor]] = None
            if hx is not None:
                state = (hx[0][index : index + 1], hx[1][index : index + 1])
            x, (h, c) = layer(x, state)  # (..., hidden)
            h_all.append(h)
            c_all.append(c)
            x = self._between(x, index)
        return x, (torch.cat(h_all, 0), torch.cat(c_all, 0))
