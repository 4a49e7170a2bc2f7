"""prune: shrink each factored weight to the singular values a rank policy keeps, in place."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from torch import nn

from svdtrain.surgery.policies import Energy, RankPolicy, Ranks, Threshold
from svdtrain.surgery.ranks import keep_ranks_

if TYPE_CHECKING:
    from svdtrain.surgery.calibrate import Calibration


def prune(model: nn.Module, policy: RankPolicy | None = None, *, calibration: Calibration | None = None,
          **old_spelling: float | int | dict[str, int]) -> dict[str, int]:  # fmt: skip
    """Physically drop each factored weight's smallest singular values, in place, down to the
    rank ``policy`` decides; returns the rank kept per weight.

    ``policy`` is one of :mod:`svdtrain.surgery.policies` (``Energy``, ``Threshold``,
    ``Ranks``, ``MacsBudget``, ``Speedup``) or any object with their ``ranks`` method.
    Parameters are replaced by smaller ones: rebuild the optimizer afterwards.

    With ``calibration`` (:func:`svdtrain.calibrate`), the policy scores each weight by its
    output energy on the calibration inputs, and each weight with input statistics is
    truncated activation-aware: to the rank-k matrix closest to it on those inputs.

    Example:
        >>> ranks = prune(model, Energy(0.02))  # {weight name: kept rank}

    Raises:
        TypeError: ``policy`` is not a rank policy (a string, None, a policy class not built).
        ValueError: the policy's (a bad target, or one out of reach), a bad or unknown rank,
            or a model without factored weights. Nothing is changed then.
    """
    if old_spelling or (isinstance(policy, (int, float)) and not isinstance(policy, bool)):
        policy = _from_old_spelling(policy, old_spelling)
    check_policy(policy)
    return keep_ranks_(model, policy.ranks(model, calibration), calibration=calibration)


_OLD_RULES = ("energy", "threshold", "rank")  # prune(model, energy=None, threshold=None, *, rank=None) until 2026-12-02


def _from_old_spelling(policy: object, rules: dict[str, object]) -> RankPolicy:
    """The policy the earlier release's ``prune(model, energy=..., threshold=..., rank=...)``
    (energy also first positional) asked for, with a DeprecationWarning naming the new spelling."""
    unknown = sorted(set(rules) - set(_OLD_RULES))
    if unknown:
        raise TypeError(f"prune() got an unexpected keyword argument {unknown[0]!r}; it takes a rank policy: "
                        "prune(model, Energy(0.02))")  # fmt: skip
    if policy is not None:
        if rules:
            raise TypeError("prune(): give one rank policy, not a policy and a keyword rule")
        rules = {"energy": policy}
    if len(rules) != 1:
        raise ValueError(f"prune(): give one rule, got {', '.join(sorted(rules))}")
    (name, value), = rules.items()
    new = {"energy": Energy, "threshold": Threshold, "rank": Ranks}[name](value)
    warnings.warn(f"prune(model, {name}={value!r}) is the spelling of an earlier release: write "
                  f"prune(model, {type(new).__name__}({value!r}))", DeprecationWarning, stacklevel=3)  # fmt: skip
    return new


def check_policy(policy: object) -> None:
    """Refuse what is not a built rank policy, naming what one is."""
    if isinstance(policy, type) or not callable(getattr(policy, "ranks", None)):
        got = f"the class {policy.__name__}" if isinstance(policy, type) else f"{policy!r} ({type(policy).__name__})"
        raise TypeError(f"policy must be a rank policy such as Energy(0.02), Threshold(0.1), Ranks(8), "
                        f"MacsBudget(example, reduction=2.0) or Speedup(1.5, example); got {got}")  # fmt: skip
