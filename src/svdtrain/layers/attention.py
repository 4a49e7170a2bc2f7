"""nn.MultiheadAttention: the packed ``in_proj_weight`` (3E x E) or the separate
``q/k/v_proj_weight`` are factored (``out_proj`` is a Linear and has its own entry).

MultiheadAttention's forward reads its projection weights whole (and its fast path passes
them to one fused kernel), so these weights deploy dense at their pruned rank: factoring
them trains a low-rank attention but saves no MACs in nn.MultiheadAttention itself.
Hugging Face attention blocks call their q/k/v/o projections as Linear (or Conv1D) modules,
which do deploy as thin pairs."""

from __future__ import annotations

import math

import torch
from torch import nn

from svdtrain.layers.registry import WeightKind, register, weight_shape


def _qkv(module: nn.MultiheadAttention, inputs: tuple, kwargs: dict) -> list[torch.Tensor]:
    names = ("query", "key", "value")
    return [inputs[i] if i < len(inputs) else kwargs[name] for i, name in enumerate(names)]


def _tokens(x: torch.Tensor) -> int:
    return math.prod(x.shape[:-1])


@register(nn.MultiheadAttention)
class AttentionKind(WeightKind):
    def weight_names(self, module: nn.MultiheadAttention) -> list[str]:
        return ["in_proj_weight"] if module._qkv_same_embed_dim else ["q_proj_weight", "k_proj_weight", "v_proj_weight"]

    def tokens(self, module: nn.Module, name: str, input_shape: torch.Size) -> int:
        # Only the query's shape is recorded; for self-attention keys and values have as many tokens.
        return math.prod(input_shape[:-1]) * (3 if name == "in_proj_weight" else 1)

    def dense_macs(self, module: nn.Module, name: str, input_shape: torch.Size) -> int:
        rows, columns = weight_shape(module, name)
        return self.tokens(module, name, input_shape) * rows // (3 if name == "in_proj_weight" else 1) * columns

    def matrix_inputs(self, module: nn.Module, name: str, inputs: tuple, kwargs: dict) -> torch.Tensor | None:
        """q/k/v_proj_weight multiply the query, key and value; the packed in_proj_weight all
        three, so only in self-attention (one tensor for all three) are its inputs one set."""
        query, key, value = _qkv(module, inputs, kwargs)
        if name == "in_proj_weight":
            x = query if query is key and key is value else None
        else:
            x = {"q_proj_weight": query, "k_proj_weight": key, "v_proj_weight": value}[name]
        return None if x is None else x.reshape(-1, x.shape[-1])

    def module_macs(self, module: nn.MultiheadAttention, inputs: tuple, kwargs: dict, output: object) -> int:
        query, key, value = _qkv(module, inputs, kwargs)
        E = module.embed_dim
        projections = _tokens(query) * E * E + _tokens(key) * E * module.kdim + _tokens(value) * E * module.vdim
        return projections + _tokens(query) * E * E  # + out_proj

    def product_macs(self, module: nn.MultiheadAttention, inputs: tuple, kwargs: dict) -> int:
        """MACs of the score (Q K^T) and value (A V) products, which hold no weight."""
        query, key, _ = _qkv(module, inputs, kwargs)
        batched = query.dim() == 3
        batch = query.shape[0 if module.batch_first else 1] if batched else 1
        length = query.shape[1 if module.batch_first else 0] if batched else query.shape[0]
        source = key.shape[1 if module.batch_first else 0] if batched else key.shape[0]
        source += (module.bias_k is not None) + module.add_zero_attn  # the extra key/value positions
        return 2 * batch * length * source * module.embed_dim
