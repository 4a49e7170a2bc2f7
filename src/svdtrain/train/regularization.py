"""The paper's two regularizers as one loss term of a training step."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from svdtrain.linalg import check_positive_int, check_sparsity_kind
from svdtrain.surgery import factored_weights
from svdtrain.surgery.groups import factor_groups
from svdtrain.surgery.losses import soft_threshold_


@dataclass(frozen=True)
class Regularization:
    """Weights of the paper's two terms; 0 turns a term off (its cost too).

    ``every`` > 1 is lazy regularization (as in StyleGAN2): the terms are computed on one
    step in ``every``, weighted by ``every``, so their average pull is unchanged. Their cost
    does not shrink with the batch (the orthogonality term multiplies r x r Gram matrices),
    so at small batches on large layers it can rival the network's own forward pass.

    ``scales`` weighs each weight's sparsity term by name (e.g. by the MACs one of its
    singular values costs, so the pull falls where a MACs budget is spent). ``proximal``
    (L1 only) applies the L1 term as a soft-threshold of s after each optimizer step, by the
    s learning rate times its weight, instead of as a gradient: it reaches exact zeros.
    ``tails`` ({weight name: bool mask over s}, updated in place by the caller between
    epochs) turns the sparsity term into an L1 term on the masked values only: those a MACs
    budget will drop.
    """

    ortho_weight: float = 0.0  # lambda_o: singular-vector orthogonality
    sparsity_weight: float = 0.0  # lambda_s: singular-value sparsity
    sparsity_kind: str = "hoyer"  # l1 | hoyer | hoyer_square
    every: int = 1
    scales: dict[str, float] | None = field(default=None, hash=False)
    proximal: bool = False
    tails: dict[str, torch.Tensor] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        for name in ("ortho_weight", "sparsity_weight"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        check_positive_int("regularize every", self.every)
        check_sparsity_kind(self.sparsity_kind)
        if self.proximal and self.sparsity_kind != "l1" and self.tails is None:
            raise ValueError(f"a proximal sparsity step needs sparsity kind l1, got {self.sparsity_kind!r}")

    @property
    def in_loss(self) -> bool:
        """Whether any term goes into the loss (a proximal L1 term acts after the step instead)."""
        return bool(self.ortho_weight or (self.sparsity_weight and not self.proximal))

    def due(self, step: int) -> bool:
        """Whether the terms are computed at ``step`` (lazy regularization: one step in ``every``)."""
        return self.in_loss and step % self.every == 0

    def bind(self, model: nn.Module) -> RegularizationTerms | None:
        """The terms on ``model``'s factors as grouped now (None when no term is in the loss).
        Bind again after pruning replaced factors."""
        return RegularizationTerms(self, model) if self.in_loss else None

    def loss(self, model: nn.Module, step: int = 0) -> torch.Tensor | float:
        """The weighted terms on ``model`` at ``step`` (0.0 on the steps lazy regularization skips)."""
        terms = self.bind(model) if self.due(step) else None
        return terms() if terms is not None else 0.0

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """The proximal L1 step, after the optimizer's (nothing otherwise)."""
        if not (self.proximal and self.sparsity_weight):
            return
        lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        scales = self.scales or {}
        soft_threshold_(model, {name: lr_of.get(id(w.s), 0.0) * self.sparsity_weight * scales.get(name, 1.0)
                                for name, w in factored_weights(model).items()}, self.tails)  # fmt: skip


class RegularizationTerms:
    """A :class:`Regularization`'s weighted terms on one model, its factors grouped by shape
    once (:class:`FactorGroups`), so each step computes them in a few batched ops."""

    def __init__(self, regularization: Regularization, model: nn.Module) -> None:
        r = regularization
        self.groups = factor_groups(model, r.scales)
        self.ortho = r.every * r.ortho_weight
        self.sparsity = 0.0 if r.proximal else r.every * r.sparsity_weight
        self.kind, self.tails = r.sparsity_kind, r.tails
        self.refresh()

    def refresh(self) -> None:
        """Read the tails again (their caller updates them in place between epochs)."""
        if self.tails is not None and self.sparsity:
            self.groups.set_tails(self.tails)

    def __call__(self) -> torch.Tensor:
        total = self.ortho * self.groups.orthogonality() if self.ortho else 0.0
        if self.sparsity:
            term = self.groups.tail_l1() if self.tails is not None else self.groups.sparsity(self.kind)
            total = total + self.sparsity * term
        return total
