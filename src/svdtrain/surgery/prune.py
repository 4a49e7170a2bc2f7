"""prune: shrink each factored weight to the singular values that matter, in place."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from svdtrain.linalg import check_energy, check_positive_int, check_threshold, energy_rank, threshold_rank
from svdtrain.surgery.walk import require_factored_weights

if TYPE_CHECKING:
    from svdtrain.surgery.calibrate import Calibration


def spectra(model: nn.Module, calibration: Calibration | None = None) -> dict[str, torch.Tensor]:
    """Per factored weight, the values a pruning rule ranks: |s|, or with ``calibration`` the
    singular values of the weight as its outputs on the calibration inputs see it."""
    layers = require_factored_weights(model)
    if calibration is None:
        return {name: layer.s.detach() for name, layer in layers.items()}
    return {name: calibration.output_spectrum(name, layer) for name, layer in layers.items()}


def prune(
    model: nn.Module,
    energy: float | None = None,
    threshold: float | None = None,
    *,
    rank: int | dict[str, int] | None = None,
    calibration: Calibration | None = None,
) -> dict[str, int]:
    """Physically drop each factored weight's smallest singular values; returns the rank kept per layer.

    Give exactly one rule:
        energy: keep the fewest largest |s| holding >= (1 - energy) of sum(s^2); 0 keeps all.
        threshold: drop |s| < threshold.
        rank: keep this many (an int for every layer, or {weight name: rank}; weights not
            named are left as they are). A rank above a weight's current rank keeps it whole.
    At least rank 1 is always kept. Parameters are replaced by smaller ones: rebuild the
    optimizer afterwards.

    With ``calibration`` (:func:`svdtrain.calibrate`), each weight with input statistics is
    truncated activation-aware instead: to the rank-k matrix closest to it on the calibration
    inputs, the energy rule counting output energy (threshold is not available then).

    Raises:
        ValueError: no rule or several, energy outside [0, 1), threshold < 0 (or with a
            calibration), a bad rank, an unknown layer name, or a model without factored weights.
    """
    given = [n for n, v in (("energy", energy), ("threshold", threshold), ("rank", rank)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of energy=, threshold=, rank= (got {', '.join(given) or 'none'})")
    layers = require_factored_weights(model).items()
    if energy is not None:
        check_energy(energy)
    if threshold is not None:
        check_threshold(threshold)
        if calibration is not None:
            raise ValueError("threshold= compares |s| to a number; with a calibration give energy= or rank=")
    if isinstance(rank, dict):
        unknown = sorted(set(rank) - {name for name, _ in layers})
        if unknown:
            raise ValueError(f"rank names unknown factored weight(s): {', '.join(map(repr, unknown))}")

    values = spectra(model, calibration) if energy is not None else {}
    targets: dict[str, int] = {}  # every rank first: a bad one (or a diverged s) changes nothing
    for name, layer in layers:
        if energy is not None:
            k = energy_rank(values[name], energy)
        elif threshold is not None:
            k = threshold_rank(layer.s, threshold)
        elif isinstance(rank, dict):
            k = check_positive_int(f"rank for {name!r}", rank[name]) if name in rank else layer.rank
        else:
            k = check_positive_int(f"rank for {name!r}", rank)
        targets[name] = min(k, layer.rank)
    kept: dict[str, int] = {}
    for name, layer in layers:
        if calibration is not None and targets[name] < layer.rank and calibration.transform(name) is not None:
            calibration.truncate_(name, layer, targets[name])
        else:
            layer.keep_(targets[name])
        kept[name] = layer.rank
    return kept
