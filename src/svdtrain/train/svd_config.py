"""SVDTrainingConfig: every choice of SVD training in one serialisable object (as
``peft.LoraConfig`` is LoRA's), with the pipeline's option names where they mean the same."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from svdtrain.linalg import (
    check_energy, check_init, check_positive_int, check_scheme, check_sparsity_kind, check_threshold,
)  # fmt: skip

CONFIG_VERSION = 1
CALIBRATIONS = ("none", "whiten", "scale")
ALLOCATIONS = ("greedy", "energy")
SPEED_DTYPE_NAMES = ("fp32", "bf16", "fp16")


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
    lean_start: float = 0.0  # > 0: once decomposed, factors hold at most this share of the dense weights' parameters
    # -- SVD training: the regularizers and what steers them (the pipeline's svd_train section)
    ortho_weight: float = 1.0  # lambda_o: the orthogonality term on U and Vh (also while fine-tuning)
    sparsity_kind: str = "hoyer"  # the sparsity term on s: l1, hoyer (|s|_1/|s|_2) or hoyer_square
    sparsity_weight: float = 1e-3  # lambda_s: its weight (off once pruned, as the pipeline's fine-tuning)
    regularize_every: int = 1  # > 1: lazy regularization, both terms on one step in N, weighted by N
    s_lr_scale: float = 1.0  # the singular values' learning rate as a multiple of lr while SVD training (param_groups)
    proximal: bool = False  # l1 (or budget_tail): the L1 term as a soft-threshold of s after each step (after_step)
    macs_weighted: bool = False  # weigh each weight's sparsity term by the MACs one of its singular values costs
    budget_tail: bool = False  # the sparsity term as an L1 on just the values the target would drop (refresh_tails)
    gradual_cuts: int = 0  # > 0: reach the MACs target in this many cuts (geometric), one per cut(), e.g. per epoch
    distill: bool = False  # distill from the teacher in SVD training too (fine-tuning does whenever distill_weight > 0)
    distill_weight: float = 0.0  # > 0: loss = (1 - w) task loss + w T^2 KL(teacher || student)
    distill_temperature: float = 4.0  # T
    # -- pruning: which singular values to keep (the pipeline's prune section)
    target_speedup: float = 0.0  # > 1: ranks for this measured speedup over dense (on speed_device in speed_dtype)
    speed_batch_size: int = 1  # the batch size target_speedup (and rank_multiple 0) is timed at
    speed_device: str = "cpu"  # where speed targets time the layers: the deployment's device (cpu, cuda, cuda:N)
    speed_dtype: str = "fp32"  # the dtype they time in: fp32, bf16 or fp16
    speed_compiled: bool = False  # time under torch.compile, for a deployment that runs compiled
    target_reduction: float = 0.0  # > 1: prune to this many times fewer MACs than the dense model
    rank_allocation: str = "greedy"  # target: greedy (least energy lost per MAC saved) or energy (one threshold)
    rank_multiple: int = 1  # kept ranks are multiples of this (8 or 16 suit conv kernels); 0: the fastest, measured
    threshold: float = 0.0  # > 0 (without a target): drop singular values below this
    energy: float = 1e-4  # otherwise: the fraction of sum(s^2) each weight may lose
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
        for name in ("ortho_weight", "sparsity_weight", "target_reduction", "target_speedup", "distill_weight",
                     "lean_start"):
            _check_number(name, getattr(self, name))
        for name in ("s_lr_scale", "distill_temperature"):
            _check_number(name, getattr(self, name), positive=True)
        for name in ("regularize_every", "calibration_batches", "speed_batch_size"):
            check_positive_int(name, getattr(self, name))
        for name in ("gradual_cuts", "bn_recalibration_batches", "rank_multiple"):
            _check_count(name, getattr(self, name))
        for name in ("proximal", "macs_weighted", "budget_tail", "distill", "speed_compiled"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _check_choice("rank_allocation", self.rank_allocation, ALLOCATIONS)
        _check_choice("calibration", self.calibration, CALIBRATIONS)
        _check_choice("speed_dtype", self.speed_dtype, SPEED_DTYPE_NAMES)
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", str(self.speed_device)):
            raise ValueError(f"speed_device must be cpu, mps, cuda or cuda:N, got {self.speed_device!r}")
        self._check_rules()
        if self.version != CONFIG_VERSION:
            raise ValueError(f"config version {self.version!r} is not this svdtrain's ({CONFIG_VERSION})")

    def _check_rules(self) -> None:
        """The rules that tie options together, one place for the library and the pipeline."""
        for name in ("target_reduction", "target_speedup"):
            if 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be > 1 (0: none), got {getattr(self, name)!r}")
        if self.target_speedup and self.target_reduction:
            raise ValueError("set target_speedup or target_reduction, not both (0 turns off one a preset or file set)")
        if self.threshold and self.has_target:
            raise ValueError("threshold and a target both choose the ranks: set one (threshold 0 turns it off)")
        if self.calibration != "none" and self.threshold:
            raise ValueError("threshold compares |s| to a number; with calibration use energy or a target")
        if self.gradual_cuts and not self.target_reduction:
            raise ValueError("gradual_cuts cut towards a MACs target: set target_reduction > 1")
        if self.rank_multiple != 1 and not (self.target_speedup or
                                            (self.target_reduction and self.rank_allocation == "greedy")):
            raise ValueError(f"rank_multiple {self.rank_multiple} applies to target_speedup, or to target_reduction "
                             "with rank_allocation greedy (the energy rule has no grid); set rank_multiple 1")
        if self.proximal and self.sparsity_kind != "l1" and not self.budget_tail:
            raise ValueError(f"proximal needs sparsity_kind l1 (or budget_tail), got {self.sparsity_kind!r}")
        if self.distill_weight > 1:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight!r}")
        if self.distill and not self.distill_weight:
            raise ValueError("distill uses distill_weight and distill_temperature: set distill_weight > 0")

    @property
    def has_target(self) -> bool:
        """Whether the ranks are chosen for a MACs or speed target."""
        return bool(self.target_reduction or self.target_speedup)

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


def _check_number(name: str, value: object, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (positive and value == 0):  # fmt: skip
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
