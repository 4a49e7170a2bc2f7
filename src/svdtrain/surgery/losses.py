"""Model-level regularizers (plain loss terms) and singular-value read-out."""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.linalg import check_sparsity_kind, sparsity_penalty
from svdtrain.surgery.walk import require_factored_weights


def orthogonality_loss(model: nn.Module) -> torch.Tensor:
    """Sum over factored weights of ||U^T U - I||^2/r^2 + ||Vh Vh^T - I||^2/r^2 (a scalar tensor).

    Raises:
        ValueError: the model has no factored weights.
    """
    return torch.stack([w.orthogonality_penalty() for w in require_factored_weights(model).values()]).sum()


def sparsity_loss(model: nn.Module, kind: str = "hoyer") -> torch.Tensor:
    """Sum over factored weights of the sparsity of s: ``"l1"``, ``"hoyer"`` or ``"hoyer_square"``.

    Raises:
        ValueError: unknown kind, or the model has no factored weights.
    """
    check_sparsity_kind(kind)
    return torch.stack([sparsity_penalty(w.s, kind) for w in require_factored_weights(model).values()]).sum()


def singular_values(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copy of each factored weight's s, keyed by the weight's name."""
    return {name: w.s.detach().clone() for name, w in require_factored_weights(model).items()}
