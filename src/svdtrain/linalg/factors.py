"""Initial factors U (m, r), s (r,), Vh (r, n) for a matrix of shape (m, n)."""

from __future__ import annotations

import math

import torch

INITS = ("svd", "svd_lowrank", "random")


def check_init(init: str) -> str:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid inits are {', '.join(INITS)}")
    return init


def resolve_rank(rank: int | float | None, full_rank: int) -> int:
    """``rank`` as a count: None keeps all; an int >= 1 (capped at full rank); a float in (0, 1) a fraction."""
    if rank is None:
        return full_rank
    if isinstance(rank, bool) or not isinstance(rank, (int, float)):
        raise ValueError(f"rank must be an int >= 1 or a fraction in (0, 1), got {rank!r}")
    if isinstance(rank, float):
        if not 0 < rank < 1:
            raise ValueError(f"a fractional rank must be in (0, 1), got {rank!r}")
        return max(1, round(rank * full_rank))
    if rank < 1:
        raise ValueError(f"rank must be an int >= 1 or a fraction in (0, 1), got {rank!r}")
    return min(rank, full_rank)


def initial_factors(
    matrix: torch.Tensor, init: str = "svd", rank: int | float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Factors of ``matrix`` by ``init``, keeping ``rank`` of them (see :func:`resolve_rank`).

    svd: exact, then truncated. svd_lowrank: randomized SVD of only the top ``rank`` triplets
    (Halko et al.; needs ``rank``), much faster for large layers kept at small ranks.
    random: the paper's from-scratch initialization.
    """
    check_init(init)
    r = resolve_rank(rank, min(matrix.shape))
    if init == "random":
        return random_factors(*matrix.shape, rank=r, dtype=matrix.dtype, device=matrix.device)
    if init == "svd_lowrank":
        if rank is None:
            raise ValueError("init 'svd_lowrank' computes only the top singular values: give rank=")
        return lowrank_svd_factors(matrix, r)
    U, s, Vh = svd_factors(matrix)
    return U[:, :r].contiguous(), s[:r].contiguous(), Vh[:r].contiguous()


def lowrank_svd_factors(
    matrix: torch.Tensor, rank: int, oversample: int = 10, niter: int = 2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``rank`` factors by randomized SVD (torch.svd_lowrank), in the matrix's dtype.

    ``oversample`` extra directions and ``niter`` power iterations buy accuracy on slowly
    decaying spectra; the error is measured in benchmarks/tooling_speed.py.
    """
    q = min(rank + oversample, *matrix.shape)
    work = matrix.detach().float() if matrix.dtype in (torch.float16, torch.bfloat16) else matrix.detach()
    U, s, V = torch.svd_lowrank(work, q=q, niter=niter)  # no half-precision QR on CPU
    return tuple(t.to(matrix.dtype).contiguous() for t in (U[:, :rank], s[:rank], V[:, :rank].T))


def svd_factors(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact thin SVD, computed in float64 so float32 layers round-trip to ~1e-7.

    Returns U (m, r), s (r,) descending and >= 0, Vh (r, n) with r = min(m, n), in the
    matrix's dtype and device.
    """
    U, s, Vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    return U.to(matrix.dtype), s.to(matrix.dtype), Vh.to(matrix.dtype)


def random_factors(
    m: int, n: int, *, rank: int | None = None, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's from-scratch initialization: Kaiming-normal factors, normal s.

    Kaiming normal with fan-in gives U and Vh entries of variance 2/r and 2/n, so the
    product has roughly the scale of a Kaiming-initialized dense layer.
    """
    r = rank or min(m, n)
    U = torch.randn(m, r, dtype=dtype, device=device) * math.sqrt(2.0 / r)
    Vh = torch.randn(r, n, dtype=dtype, device=device) * math.sqrt(2.0 / n)
    s = torch.randn(r, dtype=dtype, device=device)
    return U, s, Vh
