"""PairedAttention: nn.MultiheadAttention whose q/k/v projections are plain Linear modules, so
low-rank projections can deploy as thin pairs (the deployed form of a factored attention).

nn.MultiheadAttention reads its projection weights whole (its fast path hands them to one fused
kernel), so it cannot take them factored. Here each of q, k and v is its own module, called on
the inputs before the heads are split: ``reduce`` (Linear(E, r) = Vh, shared by q, k and v when
the packed 3E x E in_proj_weight was factored as one matrix; Identity otherwise) then
``q_proj``/``k_proj``/``v_proj``. The attention itself is ``F.scaled_dot_product_attention``, or
the softmax written out when the weights are asked for, as torch's own MultiheadAttention does.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def _float_mask(mask: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """A bool mask (True: may not attend) as an additive float mask, as MultiheadAttention reads it."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


class PairedAttention(nn.Module):
    """Same call and outputs as the nn.MultiheadAttention it replaces: ``forward(query, key,
    value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True,
    is_causal=False)`` -> ``(attn_output, attn_weights or None)``.

    ``is_causal`` is a hint, as in MultiheadAttention: ``attn_mask`` must hold the causal mask,
    and it is what is applied. Dropout on the attention weights runs in training mode.
    """

    def __init__(
        self, reduce: nn.Module, q_proj: nn.Module, k_proj: nn.Module, v_proj: nn.Module, out_proj: nn.Linear,
        num_heads: int, *, batch_first: bool = False, dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.reduce, self.q_proj, self.k_proj, self.v_proj, self.out_proj = reduce, q_proj, k_proj, v_proj, out_proj
        self.embed_dim, self.num_heads = out_proj.in_features, num_heads
        self.head_dim = self.embed_dim // num_heads
        self.batch_first, self.dropout = batch_first, dropout
        # TransformerEncoderLayer's fast path reads these (TorchScript compiles it whole) and,
        # for a dense packed projection, runs a fused kernel instead of this forward; these
        # values send it here.
        self._qkv_same_embed_dim = False
        self.in_proj_weight: Optional[torch.Tensor] = None
        self.in_proj_bias: Optional[torch.Tensor] = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def _mask(
        self, key_padding_mask: Optional[torch.Tensor], attn_mask: Optional[torch.Tensor], B: int, dtype: torch.dtype
    ) -> Optional[torch.Tensor]:
        """One additive mask broadcastable to (B, H, L, S), or None."""
        mask = _float_mask(attn_mask, dtype)
        if mask is not None:  # (L, S), or (B * H, L, S) as MultiheadAttention takes it
            heads = (1, 1) if mask.dim() == 2 else (B, self.num_heads)
            mask = mask.view(heads[0], heads[1], mask.shape[-2], mask.shape[-1])
        padding = _float_mask(key_padding_mask, dtype)
        if padding is not None:
            padding = padding.view(B, 1, 1, padding.shape[-1])
            mask = padding if mask is None else mask + padding
        return mask

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor] = None, need_weights: bool = True,
        attn_mask: Optional[torch.Tensor] = None, average_attn_weights: bool = True, is_causal: bool = False,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:  # fmt: skip
        if is_causal and attn_mask is None:
            raise RuntimeError("is_causal is a hint: give the causal mask as attn_mask too (as MultiheadAttention)")
        # Projections act per token, so they run in the callers' layout; the same tensor is
        # projected once (self-attention reads Vh x once for q, k and v).
        reduced_q = self.reduce(query)  # (..., r) or the query itself
        reduced_k = reduced_q if key is query else self.reduce(key)
        reduced_v = reduced_k if value is key else (reduced_q if value is query else self.reduce(value))
        q, k, v = self.q_proj(reduced_q), self.k_proj(reduced_k), self.v_proj(reduced_v)  # (..., E)
        batched = q.dim() == 3
        if not batched:
            q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)  # (1, T, E)
        elif not self.batch_first:
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # (B, T, E)
        B, L, E = q.shape
        mask = self._mask(key_padding_mask, attn_mask, B, q.dtype)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, T, D)
        dropout = self.dropout if self.training else 0.0
        weights: Optional[torch.Tensor] = None
        if need_weights:  # SDPA does not return its weights: the softmax written out
            scores = torch.matmul(q * (1.0 / math.sqrt(self.head_dim)), k.transpose(-2, -1))  # (B, H, L, S)
            if mask is not None:
                scores = scores + mask
            weights = F.dropout(torch.softmax(scores, dim=-1), dropout, self.training)
            y = torch.matmul(weights, v)  # (B, H, L, D)
            if average_attn_weights:
                weights = weights.mean(dim=1)  # (B, L, S)
            if not batched:
                weights = weights.squeeze(0)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)  # (B, H, L, D)
        y = self.out_proj(y.transpose(1, 2).reshape(B, L, E))  # (B, L, E)
        if not batched:
            y = y.squeeze(0)  # (L, E)
        elif not self.batch_first:
            y = y.transpose(0, 1)  # (L, B, E)
        return y, weights
