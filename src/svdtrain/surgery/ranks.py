"""Scoring and applying ranks: what a rank policy reads (the spectra) and what applies its
decision (truncation in place). Below the policies and :func:`svdtrain.prune`, which use it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from svdtrain.linalg import check_positive_int
from svdtrain.surgery.walk import require_factored_weights

if TYPE_CHECKING:
    from svdtrain.surgery.calibrate import Calibration


def spectra(model: nn.Module, calibration: Calibration | None = None) -> dict[str, torch.Tensor]:
    """Per factored weight, the values a rank policy scores: |s|, or with ``calibration`` the
    singular values of the weight as its outputs on the calibration inputs see it."""
    layers = require_factored_weights(model)
    if calibration is None:
        return {name: layer.s.detach() for name, layer in layers.items()}
    return {name: calibration.output_spectrum(name, layer) for name, layer in layers.items()}


def kept_energy(model: nn.Module, ranks: dict[str, int]) -> float:
    """The share of all factored weights' sum(s^2) that keeping each weight's ``ranks[name]``
    largest |s| keeps (a weight not named keeps all): 1.0 loses nothing."""
    kept = total = 0.0
    for name, layer in require_factored_weights(model).items():
        energy = layer.s.detach().double().square().sort(descending=True).values
        total += float(energy.sum())
        kept += float(energy[: ranks.get(name, len(energy))].sum())
    return kept / total if total > 0 else 1.0


def keep_ranks_(
    model: nn.Module, ranks: dict[str, int], *, calibration: Calibration | None = None
) -> dict[str, int]:
    """Truncate each weight named in ``ranks`` to its rank, in place (at least rank 1; a rank
    above a weight's current one keeps it whole; weights not named are left as they are);
    returns the rank kept per weight. Every rank is checked before any weight changes.

    Raises:
        ValueError: a rank that is not an integer >= 1, or an unknown weight name.
    """
    layers = require_factored_weights(model)
    unknown = sorted(set(ranks) - set(layers))
    if unknown:
        raise ValueError(f"rank names unknown factored weight(s): {', '.join(map(repr, unknown))}")
    targets = {name: min(check_positive_int(f"rank for {name!r}", ranks[name]), layer.rank) if name in ranks
               else layer.rank for name, layer in layers.items()}  # fmt: skip
    for name, layer in layers.items():  # at its own rank too: values are stored largest first
        k = targets[name]
        if calibration is not None and k < layer.rank and calibration.transform(name) is not None:
            calibration.truncate_(name, layer, k)
        else:
            layer.keep_(k)
    return {name: layer.rank for name, layer in layers.items()}
