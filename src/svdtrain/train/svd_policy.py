"""The rank policy an :class:`SVDTrainingConfig` sets, and the rank multiple it measures:
one path from config to policy, for SVDTraining and the pipeline built on it."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from svdtrain.surgery import Energy, MacsBudget, RankPolicy, Speedup, Threshold, fastest_multiple
from svdtrain.surgery.macs import Inputs
from svdtrain.train.svd_config import SVDTrainingConfig

SPEED_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def speed_timing(config: SVDTrainingConfig) -> dict:
    """Where and as what a speed target times: ``device``, ``dtype`` and ``compiled`` for
    Speedup, compact and fastest_multiple."""
    return {"device": config.speed_device, "dtype": SPEED_DTYPES[config.speed_dtype], "compiled": config.speed_compiled}


def policy_for(config: SVDTrainingConfig, *, example: Inputs, speed_example: Inputs, baseline_macs: int,
               max_macs: int | None = None, multiple: int | None = None) -> RankPolicy:  # fmt: skip
    """The one rank policy ``config`` sets (its checks refuse two targets, or a target and a
    threshold): target_speedup (timed on a copy on ``speed_device`` in ``speed_dtype``, at
    ``speed_example``'s batch size), target_reduction (at most ``baseline_macs`` /
    target_reduction MACs on ``example``, or ``max_macs`` for a gradual cut on the way there),
    threshold, else energy (the fallback, so its default never counts as a second rule).
    ``multiple``: the rank multiple where the config leaves it to measurement (``rank_multiple`` 0)."""
    multiple = multiple or config.rank_multiple or 1
    if config.target_speedup:
        return Speedup(config.target_speedup, speed_example, multiple=multiple, **speed_timing(config))
    if config.target_reduction:
        budget = max_macs if max_macs is not None else int(baseline_macs / config.target_reduction)
        return MacsBudget(example, max_macs=budget, allocation=config.rank_allocation, multiple=multiple)
    if config.threshold > 0:
        return Threshold(config.threshold)
    return Energy(config.energy)


def measure_multiple(config: SVDTrainingConfig, model: nn.Module, policy: Callable[[int], RankPolicy],
                     speed_example: torch.Tensor, log: Callable[[str], None]) -> int:  # fmt: skip
    """The one of 1, 8, 16, 32, 64 whose compact model at ``policy(multiple)`` measures fastest
    (on speed_device in speed_dtype, at ``speed_example``'s batch size); said in one line."""
    device = next(model.parameters()).device
    best, seconds = fastest_multiple(model, speed_example.to(device), policy, **speed_timing(config))
    times = ", ".join(f"{m}: {1e3 * s:.2f} ms" for m, s in seconds.items())
    log(f"prune: rank multiple {best} measured fastest ({times})")
    return best


def speed_example_of(config: SVDTrainingConfig, example: torch.Tensor) -> torch.Tensor:
    """A CPU batch of ``speed_batch_size`` inputs like ``example``: the shape speed targets are timed at."""
    example = example.cpu()
    return example[:1].expand(config.speed_batch_size, *example.shape[1:]).contiguous()

