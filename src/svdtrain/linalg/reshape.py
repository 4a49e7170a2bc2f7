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
