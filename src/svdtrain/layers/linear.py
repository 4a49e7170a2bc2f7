"""SVDLinear: nn.Linear as W (out, in) = U diag(s) Vh."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from svdtrain.layers.base import SVDLayer
from svdtrain.layers.registry import UnsupportedLayer, register
from svdtrain.linalg import initial_factors


class SVDLinear(SVDLayer):
    """Linear layer in SVD form: U (out, r), s (r,), Vh (r, in)."""

    def __init__(self, U: torch.Tensor, s: torch.Tensor, Vh: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__(U, s, Vh, bias)
        self.out_features, self.in_features = U.shape[0], Vh.shape[1]

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, init: str = "svd", scheme: str = "channel", rank: int | float | None = None
    ) -> SVDLinear:
        """SVD form of ``linear`` (``scheme`` is ignored: a matrix has one reshape; ``rank``:
        keep only that many, see ``initial_factors``)."""
        if type(linear) is not nn.Linear:
            raise UnsupportedLayer(f"{type(linear).__name__} is a subclass of Linear with its own forward")
        U, s, Vh = initial_factors(linear.weight, init, rank)
        return cls(U, s, Vh, linear.bias)

    def _tokens(self, input_shape: torch.Size) -> int:
        return math.prod(input_shape[:-1])

    def dense_macs(self, input_shape: torch.Size) -> int:
        return self._tokens(input_shape) * self.out_features * self.in_features

    def factored_macs(self, input_shape: torch.Size) -> int:
        return self._tokens(input_shape) * self.rank * (self.out_features + self.in_features)

    def factored_is_cheaper(self, input_shape: torch.Size | None = None) -> bool:
        return self.factored_macs((1, 1)) < self.dense_macs((1, 1))

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_matrix(), self.bias)  # (..., out)

    def forward_factored(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x, self.Vh) * self.s  # (..., r)
        return F.linear(h, self.U, self.bias)  # (..., out)

    @torch.no_grad()
    def to_dense(self) -> nn.Linear:
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear = linear.to(device=self.U.device, dtype=self.U.dtype)
        linear.weight.copy_(self.weight_matrix())
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        return linear

    @torch.no_grad()
    def to_factored(self) -> nn.Sequential:
        first = nn.Linear(self.in_features, self.rank, bias=False)
        second = nn.Linear(self.rank, self.out_features, bias=self.bias is not None)
        first, second = (m.to(device=self.U.device, dtype=self.U.dtype) for m in (first, second))
        first.weight.copy_(self.Vh)
        second.weight.copy_(self.U * self.s)
        if self.bias is not None:
            second.bias.copy_(self.bias)
        return nn.Sequential(first, second)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}/{self.full_rank}, bias={self.bias is not None}"
        )


register(nn.Linear)(SVDLinear.from_linear)
