"""Factored weights grouped by shape, so the regularizers are a few batched ops a step.

A ResNet-20 has 20 factored weights but 11 factor shapes and 4 lengths of s. Computed weight
by weight, the two regularizers were ~2,100 small ops a step (forward alone, counted as
torch.profiler's aten events); on a GPU each is a kernel launch, and the step is bound by
launches, not arithmetic. Here each factor shape is one batched Gram product, the Gram
matrices' distance to I is one multi-tensor (``torch._foreach_*``) op over all groups, and
every s is zero-padded into one (weights, longest s) matrix, which changes no term: zeros
add nothing to |s|_1 or |s|_2 and do not raise the peak.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn

from svdtrain.linalg import smaller_grams, sparsity_penalties
from svdtrain.surgery.sharded_groups import ShardedFactorGroups, check_tail_masks, is_sharded
from svdtrain.surgery.walk import require_factored_weights


class FactorGroups:
    """The factors of a model's factored weights, grouped by shape, with the constants of the
    terms (identities, 1/r^2, each weight's sparsity scale and tail mask) made once, on the
    factors' device (no host-to-device copy a step).

    Holds the factor parameters themselves: pruning replaces them, so build the groups again
    after a cut (the trainer builds them once per stage and again after each cut). ``scales``
    weighs each weight's sparsity term by name (default 1); ``tails`` ({name: bool mask over
    s}) names the values :meth:`tail_l1` pulls on (weights not named: none of theirs).
    """

    def __init__(self, model: nn.Module, scales: dict[str, float] | None = None,
                 tails: dict[str, torch.Tensor] | None = None) -> None:  # fmt: skip
        weights = require_factored_weights(model)
        scales = scales or {}
        by_shape: dict[tuple[int, ...], list[torch.Tensor]] = defaultdict(list)
        for weight in weights.values():
            by_shape[tuple(weight.U.shape)].append(weight.U)
            by_shape[tuple(weight.Vh.shape)].append(weight.Vh)
        self.factors = list(by_shape.values())
        first = next(iter(weights.values())).s
        device, dtype = first.device, _float(first.dtype)
        self.eyes = [torch.eye(min(shape), device=device, dtype=dtype) for shape in by_shape]
        self.inverse_k2 = torch.tensor([1 / min(shape) ** 2 for shape in by_shape], device=device, dtype=dtype)
        by_length: dict[int, list[str]] = defaultdict(list)
        for name, weight in weights.items():
            by_length[weight.rank].append(name)
        self.values = [[weights[name].s for name in names] for names in by_length.values()]
        self.longest = max(by_length)
        self.order = [name for names in by_length.values() for name in names]  # the rows of the padded s
        self.ranks = {name: weight.rank for name, weight in weights.items()}
        self.scale_of = {name: scales.get(name, 1.0) for name in self.order}
        self.scales = None
        if any(scale != 1.0 for scale in self.scale_of.values()):
            self.scales = torch.tensor(list(self.scale_of.values()), device=device, dtype=dtype)
        self.tail_weights = None
        if tails is not None:
            self.set_tails(tails)

    @torch.no_grad()
    def set_tails(self, tails: dict[str, torch.Tensor]) -> None:
        """The values :meth:`tail_l1` pulls on: each weight's mask times its scale, 0 where it
        has no tail and in the padding. Written in place, so a compiled step sees the new ones."""
        check_tail_masks(tails, self.ranks)
        if self.tail_weights is None:
            self.tail_weights = torch.zeros(len(self.order), self.longest, device=self.inverse_k2.device,
                                            dtype=self.inverse_k2.dtype)  # fmt: skip
        self.tail_weights.zero_()
        for row, name in enumerate(self.order):
            if name in tails:
                self.tail_weights[row, : self.ranks[name]] = tails[name].to(self.tail_weights) * self.scale_of[name]

    def orthogonality(self) -> torch.Tensor:
        """Sum over factored weights of ||U^T U - I||^2/r^2 + ||Vh Vh^T - I||^2/r^2."""
        with torch.autocast(self.inverse_k2.device.type, enabled=False):  # float32 under bf16 autocast too
            grams = [smaller_grams(_stacked(group)) for group in self.factors]
            distances = torch._foreach_sub(grams, self.eyes)
            squares = torch._foreach_norm(torch._foreach_mul(distances, distances), 1)  # sums of squares
            return torch.stack(squares) @ self.inverse_k2

    def padded_values(self) -> torch.Tensor:
        """Every weight's s as a row of one (weights, longest s) matrix, zero-padded."""
        blocks = [F.pad(_stacked(group), (0, self.longest - len(group[0]))) for group in self.values]
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks)

    def sparsity(self, kind: str = "hoyer") -> torch.Tensor:
        """Sum over factored weights of the sparsity of s (``"l1"``, ``"hoyer"``, ``"hoyer_square"``),
        each times its scale."""
        with torch.autocast(self.inverse_k2.device.type, enabled=False):  # float32 under bf16 autocast too
            penalties = sparsity_penalties(self.padded_values(), kind)
            return penalties.sum() if self.scales is None else penalties @ self.scales

    def tail_l1(self) -> torch.Tensor:
        """Sum over factored weights of the L1 norm of the singular values their tail masks mark,
        each times its scale."""
        if self.tail_weights is None:
            raise ValueError("these groups were built without tails")
        with torch.autocast(self.inverse_k2.device.type, enabled=False):
            return (self.padded_values().abs() * self.tail_weights).sum()


def factor_groups(model: nn.Module, scales: dict[str, float] | None = None,
                  tails: dict[str, torch.Tensor] | None = None) -> FactorGroups | ShardedFactorGroups:  # fmt: skip
    """The regularizers' groups for ``model``: batched by shape, or for factors FSDP2 sharded,
    computed on the shards (:class:`~svdtrain.surgery.sharded_groups.ShardedFactorGroups`)."""
    return ShardedFactorGroups(model, scales, tails) if is_sharded(model) else FactorGroups(model, scales, tails)


def _stacked(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Same-shape tensors as one (G, ...) tensor: one cat (a stack is one op per member more)."""
    first = tensors[0]
    return first.unsqueeze(0) if len(tensors) == 1 else torch.cat(tensors).view(len(tensors), *first.shape)


def _float(dtype: torch.dtype) -> torch.dtype:
    """The dtype the terms are computed in: float32 for half-precision factors."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
