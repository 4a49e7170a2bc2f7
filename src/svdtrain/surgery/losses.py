"""Model-level regularizers (plain loss terms) and singular-value read-out."""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.linalg import check_sparsity_kind, sparsity_penalty
from svdtrain.surgery.walk import require_svd_layers


def orthogonality_loss(model: nn.Module) -> torch.Tensor:
    """Sum over SVD layers of ||U^T U - I||^2/r^2 + ||Vh Vh^T - I||^2/r^2 (a scalar tensor).

    Raises:
        ValueError: the model has no SVD layers.
    """
    return torch.stack([layer.orthogonality_penalty() for _, layer in require_svd_layers(model)]).sum()


def sparsity_loss(model: nn.Module, kind: str = "hoyer") -> torch.Tensor:
    """Sum over SVD layers of the sparsity of s: ``"l1"``, ``"hoyer"`` or ``"hoyer_square"``.

    Raises:
        ValueError: unknown kind, or the model has no SVD layers.
    """
    check_sparsity_kind(kind)
    return torch.stack([sparsity_penalty(layer.s, kind) for _, layer in require_svd_layers(model)]).sum()


def singular_values(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copy of each SVD layer's s, keyed by the layer's qualified name."""
    return {name: layer.s.detach().clone() for name, layer in require_svd_layers(model)}
