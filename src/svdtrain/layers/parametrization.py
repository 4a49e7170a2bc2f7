"""SVDWeight: the parametrization W = U diag(s) Vh of one weight, in its module's own layout.

Registered with ``torch.nn.utils.parametrize``, it keeps the module's type, forward, hooks
and ``.weight``: code that reads the weight or checks ``isinstance`` keeps working, and fused
kernels (oneDNN/cuDNN LSTM, SDPA attention) still run. The factors are the parametrization's
originals: ``<module>.parametrizations.<param>.original0/1/2`` are U (m, r), s (r,), Vh (r, n).
"""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.linalg import check_view, initial_factors, matrix_to_weight, weight_to_matrix


class SVDWeight(nn.Module):
    """Maps factors (U, s, Vh) to a weight of ``weight_shape`` through a matrix ``view``.

    ``right_inverse`` factors a weight by ``init`` keeping ``rank`` values (see
    ``svdtrain.linalg.initial_factors``); it runs once when the parametrization is
    registered and again if someone assigns a new weight to the module.
    """

    def __init__(
        self, view: str, weight_shape: torch.Size | tuple[int, ...], *, init: str = "svd",
        rank: int | float | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.view = check_view(view)
        self.weight_shape = tuple(weight_shape)
        self.init, self.rank = init, rank

    def forward(self, U: torch.Tensor, s: torch.Tensor, Vh: torch.Tensor) -> torch.Tensor:
        # The product in the factors' own precision even under autocast (bf16 training): the
        # module's op then casts the rebuilt weight as it casts any weight.
        if U.is_meta:  # shapes only (a model built on the meta device); autocast has no meta device
            return matrix_to_weight((U * s) @ Vh, self.view, self.weight_shape)
        with torch.autocast(U.device.type, enabled=False):
            return matrix_to_weight((U * s) @ Vh, self.view, self.weight_shape)  # (m, r) (r,) (r, n) -> weight

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return initial_factors(weight_to_matrix(weight, self.view), self.init, self.rank)

    def extra_repr(self) -> str:
        return f"view={self.view}, weight_shape={self.weight_shape}"
