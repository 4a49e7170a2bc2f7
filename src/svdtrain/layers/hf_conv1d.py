"""transformers' Conv1D (GPT-2's attention and MLP projections): a linear layer storing its
weight as (in, out), computing x @ W + b. Factored as the (out, in) transpose, deployed as
two plain Linear layers. Registered by name: transformers is never imported here."""

from __future__ import annotations

import math

import torch
from torch import nn

from svdtrain.layers.linear import linear_pair
from svdtrain.layers.registry import Factors, WeightKind, register, weight_shape


@register("transformers.pytorch_utils.Conv1D")
class HFConv1DKind(WeightKind):
    def weight_names(self, module: nn.Module) -> list[str]:
        return ["weight"]

    def view(self, module: nn.Module, name: str, scheme: str) -> str:
        return "transpose"

    def tokens(self, module: nn.Module, name: str, input_shape: torch.Size) -> int:
        return math.prod(input_shape[:-1])

    def pair_macs(self, module: nn.Module, name: str, input_shape: torch.Size | None, rank: int) -> float:
        in_features, out_features = weight_shape(module, "weight")
        tokens = 1 if input_shape is None else self.tokens(module, name, input_shape)
        return tokens * rank * (in_features + out_features)

    def module_macs(self, module: nn.Module, inputs: tuple, kwargs: dict, output: torch.Tensor) -> int:
        return output.numel() * weight_shape(module, "weight")[0]

    def matrix_inputs(self, module: nn.Module, name: str, inputs: tuple, kwargs: dict) -> torch.Tensor | None:
        x = inputs[0] if inputs else kwargs.get("x")
        return x.reshape(-1, x.shape[-1]) if isinstance(x, torch.Tensor) else None

    def deploy(self, module: nn.Module, pairs: dict[str, Factors]) -> nn.Module:
        return linear_pair(pairs["weight"], module.bias) if "weight" in pairs else module
