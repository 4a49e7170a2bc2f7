"""nn.Linear: W (out, in) factored as is; deployed as Linear(in, r) then Linear(r, out)."""

from __future__ import annotations

import math

import torch
from torch import nn

from svdtrain.layers.registry import Factors, WeightKind, plain_type, register, weight_shape


@torch.no_grad()
def linear_pair(factors: Factors, bias: torch.Tensor | None) -> nn.Sequential:
    """Two plain Linear layers computing x -> (U diag(s) Vh) x + bias."""
    U, s, Vh = factors
    first = nn.Linear(Vh.shape[1], Vh.shape[0], bias=False, device=U.device, dtype=U.dtype)
    second = nn.Linear(U.shape[1], U.shape[0], bias=bias is not None, device=U.device, dtype=U.dtype)
    first.weight.copy_(Vh)  # (r, in)
    second.weight.copy_(U * s)  # (out, r)
    if bias is not None:
        second.bias.copy_(bias)
    return nn.Sequential(first, second)


@register(nn.Linear)
class LinearKind(WeightKind):
    def weight_names(self, module: nn.Linear) -> list[str]:
        return ["weight"]

    def tokens(self, module: nn.Module, name: str, input_shape: torch.Size) -> int:
        return math.prod(input_shape[:-1])

    def pair_macs(self, module: nn.Module, name: str, input_shape: torch.Size | None, rank: int) -> float:
        out_features, in_features = weight_shape(module, name)
        tokens = 1 if input_shape is None else self.tokens(module, name, input_shape)
        return tokens * rank * (in_features + out_features)

    def module_macs(self, module: nn.Linear, inputs: tuple, kwargs: dict, output: torch.Tensor) -> int:
        return output.numel() * module.in_features

    def deploy(self, module: nn.Linear, pairs: dict[str, Factors]) -> nn.Module:
        return linear_pair(pairs["weight"], module.bias) if "weight" in pairs else module

    def matrix_inputs(self, module: nn.Module, name: str, inputs: tuple, kwargs: dict) -> torch.Tensor | None:
        x = inputs[0] if inputs else kwargs.get("input")
        return x.reshape(-1, x.shape[-1]) if isinstance(x, torch.Tensor) else None

    def swappable(self, module: nn.Module) -> bool:
        # Subclasses (MultiheadAttention's out_proj) are read as weights by their parent.
        return plain_type(module) is nn.Linear
