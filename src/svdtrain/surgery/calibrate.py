"""Activation-aware truncation: keep the directions that matter for a layer's *outputs* on
real inputs, not for its weight alone.

Truncated SVD minimizes ||W - W_r||; what the network feels is ||(W - W_r) X|| over the
inputs X the weight sees. With G = X Xᵀ / N = S Sᵀ the second is ||(W - W_r) S||, so the
best rank-r W_r is the truncated SVD of W S mapped back by S⁻¹ (SVD-LLM's truncation-aware
whitening, Wang et al. 2024). ASVD (Yuan et al. 2023) scales columns by the mean input
magnitude instead, S = diag(mean |x|)^alpha, cheaper and rougher. Both need a few batches.

Usage: ``cal = calibrate(model, batches)`` on a decomposed model, then
``prune(model, policy, calibration=cal)``: the policy scores weights by output energy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from svdtrain.layers import FactoredWeight, kind_for
from svdtrain.surgery.trace import _eval
from svdtrain.surgery.walk import require_factored_weights

METHODS = ("whiten", "scale")


@dataclass
class InputStats:
    """Sums over the input vectors (rows) one weight multiplied."""

    gram: torch.Tensor  # (n, n) float64: sum of x xᵀ (each batch's product in float32)
    abs_sum: torch.Tensor  # (n,) float64: sum of |x|
    count: int = 0
    rows: bool = False  # the inputs meet the matrix's rows (outputs x @ M), not its columns (M x)

    @classmethod
    def empty(cls, n: int, device: torch.device, rows: bool = False) -> InputStats:
        zeros = torch.zeros(n, n, dtype=torch.float64, device=device)
        return cls(zeros, torch.zeros(n, dtype=torch.float64, device=device), rows=rows)

    @torch.no_grad()
    def add(self, rows: torch.Tensor) -> None:
        rows = rows.detach().float()
        self.gram += (rows.T @ rows).double()
        self.abs_sum += rows.abs().sum(0).double()
        self.count += rows.shape[0]


@dataclass
class Calibration:
    """Input statistics of a model's factored weights and how they weigh truncation.

    ``method``: "whiten" (SVD-LLM) or "scale" (ASVD, with exponent ``alpha``). ``damping``
    adds that fraction of the mean input energy to every direction before whitening, so
    directions the calibration batches never excited are not blown up by S⁻¹ (GPTQ's damping).
    """

    stats: dict[str, InputStats]
    method: str = "whiten"
    alpha: float = 0.5
    damping: float = 0.01
    batches: int = 0  # how many batches the statistics come from
    _transforms: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; valid methods are {', '.join(METHODS)}")
        if not (self.alpha > 0 and self.damping >= 0):
            raise ValueError(f"calibration needs alpha > 0 and damping >= 0, got {self.alpha} and {self.damping}")

    def transform(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(S, S⁻¹) in float64 for weight ``name``, or None when it has no statistics."""
        stats = self.stats.get(name)
        if stats is None or stats.count == 0:
            return None
        if name not in self._transforms:
            self._transforms[name] = self._compute(stats)
        return self._transforms[name]

    def _compute(self, stats: InputStats) -> tuple[torch.Tensor, torch.Tensor]:
        if self.method == "scale":
            if not torch.isfinite(stats.abs_sum).all():
                raise ValueError("calibration inputs hold NaN or inf: the model's activations diverged")
            scale = (stats.abs_sum / stats.count).pow(self.alpha)
            scale = scale.clamp_min(float(scale.mean()) * 1e-3 + 1e-12)
            return torch.diag(scale), torch.diag(1 / scale)
        gram = stats.gram / stats.count
        if not (torch.isfinite(gram).all() and torch.isfinite(stats.abs_sum).all()):
            raise ValueError("calibration inputs hold NaN or inf: the model's activations diverged")
        gram = gram + torch.eye(len(gram), dtype=gram.dtype, device=gram.device) * (
            self.damping * float(gram.diagonal().mean()) + 1e-12)  # fmt: skip
        eigenvalues, Q = torch.linalg.eigh(gram)  # gram = Q diag(λ) Qᵀ = S Sᵀ with S = Q diag(√λ)
        root = eigenvalues.clamp_min(float(eigenvalues.max()) * 1e-12).sqrt()
        return Q * root, (Q / root).T

    def _oriented(self, name: str, layer: FactoredWeight) -> torch.Tensor:
        """The matrix W with the inputs on its columns (W x): a row-input matrix transposed."""
        matrix = layer.matrix().double()
        return matrix.T if self.stats[name].rows else matrix

    @torch.no_grad()
    def output_spectrum(self, name: str, layer: FactoredWeight) -> torch.Tensor:
        """Singular values of W S (descending): what each direction contributes to the outputs.
        A weight without statistics gives its own |s|."""
        transform = self.transform(name)
        if transform is None:
            return layer.s.detach().abs().double().sort(descending=True).values
        return torch.linalg.svdvals(self._oriented(name, layer) @ transform[0])

    @torch.no_grad()
    def truncate_(self, name: str, layer: FactoredWeight, rank: int) -> None:
        """Replace ``layer``'s factors by the rank-``rank`` matrix closest to it on the
        calibration inputs, as orthonormal U, Vh and its singular values s."""
        S, S_inv = self.transform(name)
        U, sigma, Vh = torch.linalg.svd(self._oriented(name, layer) @ S, full_matrices=False)
        U, sigma, right = U[:, :rank], sigma[:rank], Vh[:rank] @ S_inv  # W_r = U diag(σ) right
        Q, R = torch.linalg.qr(right.T)  # right = Rᵀ Qᵀ, Q (n, r) orthonormal
        inner_U, s, inner_Vh = torch.linalg.svd(sigma[:, None] * R.T)  # diag(σ) Rᵀ, (r, r)
        left, right = U @ inner_U, inner_Vh @ Q.T  # W_r = left diag(s) right
        if self.stats[name].rows:  # the layer's matrix is W_rᵀ = rightᵀ diag(s) leftᵀ
            left, right = right.T, left.T
        layer.set_factors_(left, s, right)


def call_on_batch(model: nn.Module, batch: object) -> object:
    """``model``'s outputs on one training batch: a tensor, an ``(inputs, targets)`` pair (the
    inputs), or a dict of keyword inputs (a Hugging Face batch)."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(batch[0])
    return model(batch)


@torch.no_grad()
def calibrate(
    model: nn.Module, batches: Iterable, *, max_batches: int | None = None, method: str = "whiten",
    alpha: float = 0.5, damping: float = 0.01,
) -> Calibration:  # fmt: skip
    """Input statistics of every factored weight of ``model`` over ``batches`` (tensors,
    ``(inputs, targets)`` pairs, or dicts of keyword inputs), run in eval mode.

    Weights whose inputs cannot be seen from their module's call (an LSTM's W_hh or deeper
    W_ih, cross-attention's packed projection) get none and are later truncated by their own
    singular values. A spatial-wise conv's statistics are of its vertical patches, which meet
    its matrix from the left.

    Raises:
        ValueError: no factored weights, an unknown method, or no batch at all.
    """
    layers = require_factored_weights(model)
    calibration = Calibration({}, method=method, alpha=alpha, damping=damping)  # checks the settings before any work
    by_module: dict[int, list[tuple[str, FactoredWeight]]] = {}
    for name, layer in layers.items():
        by_module.setdefault(id(layer.module), []).append((name, layer))

    def record(module, args, kwargs):
        kind = kind_for(module)
        for name, layer in by_module[id(module)]:
            rows = kind.matrix_inputs(module, layer.param, args, kwargs)
            enter_rows = kind.inputs_enter_rows(module, layer.param)
            n = layer.shape[0] if enter_rows else layer.shape[1]
            if rows is None or rows.shape[-1] != n:
                continue
            if name not in calibration.stats:
                calibration.stats[name] = InputStats.empty(n, rows.device, rows=enter_rows)
            calibration.stats[name].add(rows)

    modules = {id(layer.module): layer.module for layer in layers.values()}
    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in modules.values()]
    seen = 0
    try:
        with _eval(model):
            for batch in batches:
                if max_batches is not None and seen >= max_batches:
                    break
                call_on_batch(model, batch)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
    if not seen:
        raise ValueError("calibrate got no batches")
    calibration.batches = seen
    return calibration
