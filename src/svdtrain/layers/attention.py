"""nn.MultiheadAttention: the packed ``in_proj_weight`` (3E x E) or the separate
``q/k/v_proj_weight`` are factored (``out_proj`` is a Linear and has its own entry).

Training runs MultiheadAttention's own forward (and its fused kernels) on the rebuilt weights.
Deployed, the module becomes ``svdtrain.deploy.PairedAttention``, which calls its projections
as Linear modules: the packed weight as one shared Vh (Linear(E, r)) feeding q, k and v
(Linear(r, E) each), so self-attention reads Vh x once and the whole pair costs r (E + 3E)
per token against 3E^2 dense; separate weights (kdim/vdim) each as their own pair or dense
Linear. The packed weight stays one factored matrix, as it trains: q, k and v share its
singular vectors and its rank budget. Its costs count self-attention (one input for all
three); in cross-attention each distinct input is reduced apart, r E more per token.
``add_bias_kv`` / ``add_zero_attn`` modules and subclasses keep their type and deploy dense."""

from __future__ import annotations

import math

import torch
from torch import nn

from svdtrain.deploy import PairedAttention
from svdtrain.layers.linear import linear_pair
from svdtrain.layers.registry import Factors, WeightKind, plain_type, register, weight_shape


def _qkv(module: nn.MultiheadAttention, inputs: tuple, kwargs: dict) -> list[torch.Tensor]:
    names = ("query", "key", "value")
    return [inputs[i] if i < len(inputs) else kwargs[name] for i, name in enumerate(names)]


def _tokens(x: torch.Tensor) -> int:
    return math.prod(x.shape[:-1])


def _fusable(layer: nn.Module) -> bool:
    """Whether a TransformerEncoderLayer still holds the module types its fused kernel reads."""
    parts = (getattr(layer, "self_attn", None), getattr(layer, "linear1", None), getattr(layer, "linear2", None))
    return type(parts[0]) is nn.MultiheadAttention and all(isinstance(p, nn.Linear) for p in parts[1:])


@torch.no_grad()
def _dense_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    rows, columns = weight.shape
    linear = nn.Linear(columns, rows, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    linear.weight.copy_(weight)
    if bias is not None:
        linear.bias.copy_(bias)
    return linear


def paired_attention(module: nn.MultiheadAttention, pairs: dict[str, Factors]) -> PairedAttention:
    """``module`` as a PairedAttention: the weights in ``pairs`` as thin pairs, the others dense."""
    E = module.embed_dim
    biases = [None] * 3 if module.in_proj_bias is None else module.in_proj_bias.detach().split(E)
    if "in_proj_weight" in pairs:  # Vh shared by q, k and v: one Linear(E, r), then U_q, U_k, U_v
        U, s, Vh = pairs["in_proj_weight"]
        thin = [linear_pair((u, s, Vh), b) for u, b in zip(U.split(E), biases)]
        reduce, projections = thin[0][0], [pair[1] for pair in thin]
    else:
        names = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
        reduce = nn.Identity()
        projections = [linear_pair(pairs[n], b) if n in pairs else _dense_linear(getattr(module, n).detach(), b)
                       for n, b in zip(names, biases)]  # fmt: skip
    return PairedAttention(
        reduce, *projections, module.out_proj, module.num_heads, batch_first=module.batch_first, dropout=module.dropout
    ).train(module.training)


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

    def pair_macs(
        self, module: nn.MultiheadAttention, name: str, input_shape: torch.Size | None, rank: int
    ) -> float | None:
        """Packed: r (E + 3E) per token (self-attention); separate: r (in + E) per token."""
        if module.bias_k is not None or module.add_zero_attn:
            return None
        rows, columns = weight_shape(module, name)
        if input_shape is None and name == "in_proj_weight":
            return rank * (3 * columns + rows)  # bounded from above: q, k and v each reduced apart
        tokens = 1 if input_shape is None else math.prod(input_shape[:-1])
        return tokens * rank * (columns + rows)

    def deploy(self, module: nn.MultiheadAttention, pairs: dict[str, Factors]) -> nn.Module:
        return paired_attention(module, pairs) if pairs else module

    def swappable(self, module: nn.Module) -> bool:
        return plain_type(module) is nn.MultiheadAttention

    def sample_inputs(self, module: nn.MultiheadAttention, input_shape: torch.Size, like: torch.Tensor) -> tuple:
        """Self-attention (one tensor as query, key and value) for a packed weight; keys and
        values with the query's tokens otherwise."""
        query = torch.randn(input_shape, dtype=like.dtype, device=like.device)
        if module._qkv_same_embed_dim:
            return query, query, query
        key, value = (torch.randn(*input_shape[:-1], n, dtype=like.dtype, device=like.device)
                      for n in (module.kdim, module.vdim))  # fmt: skip
        return query, key, value

    def settle(self, model: nn.Module) -> None:
        # nn.TransformerEncoder(Layer)'s fast paths hand self_attn's, linear1's and linear2's
        # weights to fused kernels (and, in eval with a padding mask, pack the batch as a nested
        # tensor for them); once any of those deploys as another module they must not run.
        for module in model.modules():
            if isinstance(module, nn.TransformerEncoderLayer) and not _fusable(module):
                module.activation_relu_or_gelu = 0  # a flag those paths check, read nowhere else
            if isinstance(module, nn.TransformerEncoder) and len(module.layers) and not _fusable(module.layers[0]):
                module.use_nested_tensor = False  # padded positions then hold values, not zeros

    def deployed_form(self, deployed: PairedAttention, name: str) -> str:
        if name == "in_proj_weight":
            return "pair"
        return "pair" if isinstance(getattr(deployed, name.replace("_weight", "")), nn.Sequential) else "dense"

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
