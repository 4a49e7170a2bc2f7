"""The paper's two regularizers on one layer's factors, as plain differentiable terms."""

from __future__ import annotations

import torch

SPARSITY_KINDS = ("l1", "hoyer", "hoyer_square")


def check_sparsity_kind(kind: str) -> str:
    # The official code returns 0 for a misspelled kind, silently training without sparsity.
    if kind not in SPARSITY_KINDS:
        raise ValueError(f"unknown sparsity kind {kind!r}; valid kinds are {', '.join(SPARSITY_KINDS)}")
    return kind


def orthogonality_penalty(factor: torch.Tensor) -> torch.Tensor:
    """||G - I||_F^2 / size(G)^2 with G the smaller Gram matrix of ``factor`` (m, n).

    G = A A^T when m <= n (rows should be orthonormal, as for Vh), else A^T A (columns,
    as for U). Dividing by size(G)^2 = r^2 makes layers of different rank weigh alike.
    """
    return orthogonality_penalties(factor.unsqueeze(0))[0]


def orthogonality_penalties(factors: torch.Tensor) -> torch.Tensor:
    """:func:`orthogonality_penalty` of each of ``factors`` (G, m, n) at once: (G,).

    One batched product for a stack of same-shape factors: on a GPU a handful of kernel
    launches for a whole group of layers instead of a handful per layer."""
    with torch.autocast(factors.device.type, enabled=False):  # in float32 under bf16 autocast too
        gram = smaller_grams(factors)
        k = gram.shape[-1]
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        return (gram - eye).pow(2).sum((1, 2)) / (k * k)


def smaller_grams(factors: torch.Tensor) -> torch.Tensor:
    """The smaller Gram matrix of each of ``factors`` (G, m, n), in float32 for half-precision
    factors: (G, k, k), k = min(m, n). A A^T when m <= n (rows should be orthonormal, as for
    Vh), else A^T A (columns, as for U)."""
    _, m, n = factors.shape
    factors = factors.float() if factors.dtype in (torch.float16, torch.bfloat16) else factors
    return torch.bmm(factors, factors.mT) if m <= n else torch.bmm(factors.mT, factors)


def sparsity_penalty(s: torch.Tensor, kind: str = "hoyer") -> torch.Tensor:
    """Sparsity of the singular values ``s`` (r,).

    ``l1`` = sum |s|; ``hoyer`` = ||s||_1 / ||s||_2 - 1; ``hoyer_square`` =
    ||s||_1^2 / ||s||_2^2 - 1. The Hoyer terms are 0 for a 1-sparse s and scale-invariant,
    so s is divided by its (detached) largest magnitude first: that leaves value and
    gradient unchanged mathematically but keeps tiny or huge spectra finite. An all-zero
    s gives 0 with a zero gradient instead of 0/0.
    """
    return sparsity_penalties(s.unsqueeze(0), kind)[0]


def sparsity_penalties(s: torch.Tensor, kind: str = "hoyer") -> torch.Tensor:
    """:func:`sparsity_penalty` of each row of ``s`` (G, r) at once: (G,)."""
    check_sparsity_kind(kind)
    magnitude = s.abs().float() if s.dtype in (torch.float16, torch.bfloat16) else s.abs()  # the ratio in float32
    if kind == "l1":
        return magnitude.sum(1)
    peak = magnitude.detach().amax(1, keepdim=True)
    scaled = magnitude / torch.where(peak > 0, peak, torch.ones_like(peak))
    return hoyer_from_sums(scaled.sum(1), scaled.pow(2).sum(1), peak.squeeze(1) > 0, kind)


def hoyer_from_sums(l1: torch.Tensor, l2_sq: torch.Tensor, nonzero: torch.Tensor, kind: str) -> torch.Tensor:
    """Hoyer (l1/l2 - 1) or Hoyer-Square (l1^2/l2^2 - 1) from the sums of |s| and s^2 (of s
    scaled by its peak, so no sum overflows or underflows), 0 where s is all zero (``nonzero``
    False): the one formula for whole rows and for sums gathered from shards."""
    safe_l2_sq = torch.where(nonzero, l2_sq, torch.ones_like(l2_sq))
    ratio = l1 / safe_l2_sq.sqrt() if kind == "hoyer" else l1.pow(2) / safe_l2_sq
    return torch.where(nonzero, ratio - 1.0, torch.zeros_like(ratio))
