"""Factored weights grouped by shape, so each regularizer is a few batched ops per group.

A ResNet-20 has 20 factored weights but only 11 factor shapes and 4 lengths of s. Computed
weight by weight, the two regularizers are ~2,100 small ops a step (forward alone); on a
GPU each is a kernel launch, and the step is bound by launches, not arithmetic. Stacked by
shape they are ~100.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from svdtrain.linalg import check_sparsity_kind, orthogonality_penalties, sparsity_penalties
from svdtrain.surgery.walk import require_factored_weights


def _stacked(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


class FactorGroups:
    """The factors of a model's factored weights, grouped by shape, with each weight's
    sparsity scale and tail mask stacked beside them once (no host-to-device copy a step).

    Holds the factor parameters themselves: pruning replaces them, so build the groups again
    after a cut (the training loop builds them once per epoch). ``scales`` weighs each
    weight's sparsity term by name (default 1); ``tails`` ({name: bool mask over s}) names the
    values :meth:`tail_l1` pulls on (weights not named: none of theirs).
    """

    def __init__(self, model: nn.Module, scales: dict[str, float] | None = None,
                 tails: dict[str, torch.Tensor] | None = None) -> None:  # fmt: skip
        weights = require_factored_weights(model)
        scales = scales or {}
        by_shape: dict[tuple[int, ...], list[torch.Tensor]] = defaultdict(list)
        by_length: dict[int, list[tuple[str, torch.Tensor]]] = defaultdict(list)
        for name, weight in weights.items():
            by_shape[tuple(weight.U.shape)].append(weight.U)
            by_shape[tuple(weight.Vh.shape)].append(weight.Vh)
            by_length[weight.rank].append((name, weight.s))
        self.factors = list(by_shape.values())
        self.eyes = [torch.eye(min(group[0].shape), dtype=_penalty_dtype(group[0]), device=group[0].device)
                     for group in self.factors]  # fmt: skip
        self.values = [[s for _, s in members] for members in by_length.values()]
        self.scales = [torch.tensor([scales.get(name, 1.0) for name, _ in members], device=members[0][1].device)
                       for members in by_length.values()]  # fmt: skip
        self.uniform = all(scales.get(name, 1.0) == 1.0 for name in weights)
        self.tail_weights = None
        if tails is not None:  # each weight's mask times its scale, 0 where it has no tail
            self.tail_weights = [torch.stack([tails[name].to(s.device, s.dtype) * scales.get(name, 1.0) if name in tails
                                              else torch.zeros_like(s.detach()) for name, s in members])
                                 for members in by_length.values()]  # fmt: skip

    def orthogonality(self) -> torch.Tensor:
        """Sum over factored weights of ||U^T U - I||^2/r^2 + ||Vh Vh^T - I||^2/r^2."""
        return _total(orthogonality_penalties(_stacked(group), eye).sum() for group, eye in zip(self.factors, self.eyes))

    def sparsity(self, kind: str = "hoyer") -> torch.Tensor:
        """Sum over factored weights of the sparsity of s (``"l1"``, ``"hoyer"``, ``"hoyer_square"``),
        each times its scale."""
        check_sparsity_kind(kind)
        return _total((sparsity_penalties(_stacked(group), kind) if self.uniform else
                       sparsity_penalties(_stacked(group), kind) * scale).sum()
                      for group, scale in zip(self.values, self.scales))  # fmt: skip

    def tail_l1(self) -> torch.Tensor:
        """Sum over factored weights of the L1 norm of the singular values their tail masks mark,
        each times its scale."""
        if self.tail_weights is None:
            raise ValueError("these groups were built without tails")
        return _total((_stacked(group).abs() * weights).sum() for group, weights in zip(self.values, self.tail_weights))


def _penalty_dtype(factor: torch.Tensor) -> torch.dtype:
    """The dtype orthogonality_penalties computes in: float32 for half-precision factors."""
    return torch.float32 if factor.dtype in (torch.float16, torch.bfloat16) else factor.dtype


def _total(terms) -> torch.Tensor:
    """The sum of scalar tensors, as one stack and sum (one op, not one add per term)."""
    return torch.stack(list(terms)).sum()
