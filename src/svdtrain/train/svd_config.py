"""SVDTrainingConfig: every choice of SVD training in one serialisable object (as
``peft.LoraConfig`` is LoRA's), with the pipeline's option names where they mean the same."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from svdtrain.linalg import (
    check_energy, check_init, check_positive_int, check_scheme, check_sparsity_kind, check_threshold,
)  # fmt: skip

CONFIG_VERSION = 1
CALIBRATIONS = ("none", "whiten", "scale")
ALLOCATIONS = ("greedy", "energy")


@dataclass(frozen=True)
class SVDTrainingConfig:
    """How :class:`svdtrain.SVDTraining` factors, regularizes and prunes a model.

    The ranks are chosen by one rule: ``target_reduction`` (a MACs target, on the example
    given to SVDTraining), else ``threshold``, else ``energy``. Checked on construction.

    Example:
        >>> config = SVDTrainingConfig(target_reduction=3.0, gradual_cuts=4)
        >>> SVDTrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        True
    """

    scheme: str = "channel"  # how conv kernels become matrices: channel (out x in*k*k) or spatial (in*kh x out*kw)
    init: str = "svd"  # svd: keep the (pretrained) model's function; random: the paper's from-scratch factors
    ortho_weight: float = 1.0  # lambda_o: the orthogonality term on U and Vh (also while fine-tuning)
    sparsity_kind: str = "hoyer"  # the sparsity term on s: l1, hoyer (|s|_1/|s|_2) or hoyer_square
    sparsity_weight: float = 1e-3  # lambda_s: its weight (off once pruned, as the pipeline's fine-tuning)
    regularize_every: int = 1  # > 1: lazy regularization, both terms on one step in N, weighted by N
    s_lr_scale: float = 1.0  # the singular values' learning rate as a multiple of lr (SVDTraining.param_groups)
    target_reduction: float = 0.0  # > 1: prune to this many times fewer MACs than the dense model
    rank_allocation: str = "greedy"  # target: greedy (least energy lost per MAC saved) or energy (one threshold)
    rank_multiple: int = 1  # greedy: kept ranks are multiples of this (8 or 16 suit conv kernels)
    threshold: float = 0.0  # > 0 (without a target): drop singular values below this
    energy: float = 1e-4  # otherwise: the fraction of sum(s^2) each weight may lose
    gradual_cuts: int = 0  # > 0: reach target_reduction in this many cuts (geometric), one per cut(), e.g. per epoch
    calibration: str = "none"  # whiten (SVD-LLM) or scale (ASVD): cut by output energy on training batches
    calibration_batches: int = 8  # batches the calibration reads
    bn_recalibration_batches: int = 50  # after a cut, re-estimate BatchNorm statistics on N batches (0: off)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        check_scheme(self.scheme)
        check_init(self.init)
        check_sparsity_kind(self.sparsity_kind)
        check_energy(self.energy)
        check_threshold(self.threshold)
        for name in ("ortho_weight", "sparsity_weight"):
            _check_number(name, getattr(self, name))
        if not (isinstance(self.s_lr_scale, (int, float)) and not isinstance(self.s_lr_scale, bool)
                and math.isfinite(self.s_lr_scale) and self.s_lr_scale > 0):
            raise ValueError(f"s_lr_scale must be a finite number > 0, got {self.s_lr_scale!r}")
        for name in ("regularize_every", "rank_multiple", "calibration_batches"):
            check_positive_int(name, getattr(self, name))
        for name in ("gradual_cuts", "bn_recalibration_batches"):
            _check_count(name, getattr(self, name))
        _check_number("target_reduction", self.target_reduction)
        if 0 < self.target_reduction <= 1:
            raise ValueError(f"target_reduction must be > 1 (0: none), got {self.target_reduction!r}")
        if self.rank_allocation not in ALLOCATIONS:
            raise ValueError(f"rank_allocation must be one of {', '.join(ALLOCATIONS)}, got {self.rank_allocation!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {self.calibration!r}")
        if self.threshold and self.target_reduction:
            raise ValueError("threshold and target_reduction both choose the ranks: set one")
        if self.gradual_cuts and not self.target_reduction:
            raise ValueError("gradual_cuts cut towards a MACs target: set target_reduction > 1")
        if self.rank_multiple > 1 and (self.rank_allocation != "greedy" or not self.target_reduction):
            raise ValueError("rank_multiple applies to a target_reduction with rank_allocation 'greedy' only")
        if self.version != CONFIG_VERSION:
            raise ValueError(f"config version {self.version!r} is not this svdtrain's ({CONFIG_VERSION})")

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SVDTrainingConfig:
        """The config :meth:`to_dict` gave (missing fields take their defaults).

        Raises:
            TypeError: ``values`` is not a mapping (a list, a JSON string).
            ValueError: an unknown field, or a value the checks refuse.
        """
        if not isinstance(values, Mapping):
            raise TypeError(f"SVDTrainingConfig.from_dict takes a mapping of field names to values (as to_dict "
                            f"gives), got {type(values).__name__}")  # fmt: skip
        unknown = sorted(str(name) for name in set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown SVDTrainingConfig field(s): {', '.join(unknown)}")
        return cls(**dict(values))


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
