"""Model-level regularizers (plain loss terms) and singular-value read-out."""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.linalg import check_sparsity_kind
from svdtrain.surgery.groups import factor_groups
from svdtrain.surgery.walk import require_factored_weights


def orthogonality_loss(model: nn.Module) -> torch.Tensor:
    """Sum over factored weights of ||U^T U - I||^2/r^2 + ||Vh Vh^T - I||^2/r^2 (a scalar tensor),
    computed for each group of same-shape factors at once (:class:`FactorGroups`).

    Raises:
        ValueError: the model has no factored weights.
    """
    return factor_groups(model).orthogonality()


def sparsity_loss(model: nn.Module, kind: str = "hoyer", scales: dict[str, float] | None = None) -> torch.Tensor:
    """Sum over factored weights of the sparsity of s: ``"l1"``, ``"hoyer"`` or ``"hoyer_square"``,
    each weight's term times ``scales[name]`` when given (weights not named: 1).

    Raises:
        ValueError: unknown kind, or the model has no factored weights.
    """
    check_sparsity_kind(kind)
    return factor_groups(model, scales).sparsity(kind)


def tail_l1_loss(model: nn.Module, tails: dict[str, torch.Tensor], scales: dict[str, float] | None = None) -> torch.Tensor:
    """Sum over factored weights of the L1 norm of the singular values ``tails[name]`` marks
    (a bool mask over s): the ones a pruning budget is going to drop, and only those."""
    return factor_groups(model, scales, tails).tail_l1()


@torch.no_grad()
def soft_threshold_(model: nn.Module, amounts: dict[str, float], masks: dict[str, torch.Tensor] | None = None) -> None:
    """The proximal step of an L1 term: shrink each weight's |s| by ``amounts[name]`` (only
    where ``masks[name]`` is set, when masks are given), to exact zeros where it would cross.
    Exact zeros are what a gradient step on |s| never reaches: it oscillates around 0 with the
    step size instead."""
    for name, weight in require_factored_weights(model).items():
        amount = amounts.get(name, 0.0)
        if amount <= 0 or (masks is not None and name not in masks):
            continue
        shrunk = weight.s.sign() * (weight.s.abs() - amount).clamp_min(0)
        weight.s.copy_(shrunk if masks is None else torch.where(masks[name], shrunk, weight.s))


def singular_values(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copy of each factored weight's s, keyed by the weight's name."""
    return {name: w.s.detach().clone() for name, w in require_factored_weights(model).items()}
