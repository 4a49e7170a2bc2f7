"""Initial factors U (m, r), s (r,), Vh (r, n) for a matrix of shape (m, n)."""

from __future__ import annotations

import math

import torch

INITS = ("svd", "random")


def check_init(init: str) -> str:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid inits are {', '.join(INITS)}")
    return init


def svd_factors(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact thin SVD, computed in float64 so float32 layers round-trip to ~1e-7.

    Returns U (m, r), s (r,) descending and >= 0, Vh (r, n) with r = min(m, n), in the
    matrix's dtype and device.
    """
    U, s, Vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    return U.to(matrix.dtype), s.to(matrix.dtype), Vh.to(matrix.dtype)


def random_factors(
    m: int, n: int, *, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's from-scratch initialization: Kaiming-normal factors, normal s.

    Kaiming normal with fan-in gives U and Vh entries of variance 2/r and 2/n, so the
    product has roughly the scale of a Kaiming-initialized dense layer.
    """
    r = min(m, n)
    U = torch.randn(m, r, dtype=dtype, device=device) * math.sqrt(2.0 / r)
    Vh = torch.randn(r, n, dtype=dtype, device=device) * math.sqrt(2.0 / n)
    s = torch.randn(r, dtype=dtype, device=device)
    return U, s, Vh
