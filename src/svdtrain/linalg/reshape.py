"""Conv kernel <-> matrix reshapes for the two decomposition schemes.

The scheme decides which low-rank structure the factorization exposes:

* ``channel``: ``M = W.reshape(out, in*kh*kw)``; rank r becomes a kh x kw conv with
  r filters followed by a 1x1 conv (Zhang et al. 2015 style).
* ``spatial``: ``M[c*kh + h, n*kw + w] = W[n, c, h, w]``, shape (in*kh, out*kw);
  rank r becomes a kh x 1 conv followed by a 1 x kw conv (Jaderberg et al. 2014).
"""

from __future__ import annotations

import torch

SCHEMES = ("channel", "spatial")
# How a stored weight maps to the matrix that is factored: as is, transposed (transformers'
# Conv1D stores (in, out)), or a conv kernel reshaped by one of the SCHEMES.
VIEWS = ("matrix", "transpose", *SCHEMES)


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; valid schemes are {', '.join(SCHEMES)}")
    return scheme


def kernel_to_matrix(weight: torch.Tensor, scheme: str) -> torch.Tensor:
    """Reshape a conv kernel (out, in, *k) into the matrix the scheme factors."""
    check_scheme(scheme)
    if scheme == "channel":
        return weight.reshape(weight.shape[0], -1)
    if weight.dim() != 4:
        raise ValueError(f"spatial scheme needs a 2-d kernel (out, in, kh, kw), got shape {tuple(weight.shape)}")
    out_c, in_c, kh, kw = weight.shape
    return weight.permute(1, 2, 0, 3).reshape(in_c * kh, out_c * kw)  # (in*kh, out*kw)


def matrix_to_kernel(matrix: torch.Tensor, scheme: str, kernel_shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`kernel_to_matrix`; returns a contiguous kernel of ``kernel_shape``."""
    check_scheme(scheme)
    if scheme == "channel":
        return matrix.reshape(kernel_shape)
    out_c, in_c, kh, kw = kernel_shape
    return matrix.reshape(in_c, kh, out_c, kw).permute(2, 0, 1, 3).contiguous()  # (out, in, kh, kw)


def check_view(view: str) -> str:
    if view not in VIEWS:
        raise ValueError(f"unknown matrix view {view!r}; valid views are {', '.join(VIEWS)}")
    return view


def weight_to_matrix(weight: torch.Tensor, view: str) -> torch.Tensor:
    """The matrix a weight is factored as under ``view`` (see VIEWS)."""
    check_view(view)
    if view == "matrix":
        return weight
    if view == "transpose":
        return weight.T
    return kernel_to_matrix(weight, view)


def matrix_to_weight(matrix: torch.Tensor, view: str, weight_shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`weight_to_matrix`: a weight of ``weight_shape`` in the module's own layout."""
    check_view(view)
    if view == "matrix":
        return matrix
    if view == "transpose":
        return matrix.T
    return matrix_to_kernel(matrix, view, weight_shape)
