"""The rank multiple a machine runs fastest, chosen by measurement.

Kernels like some widths more than others (ONNX Runtime's CPU kernels work in channel blocks of
8 or 16, GPU tensor cores in tiles of 8 to 64), and which one pays depends on the device, the
dtype and the layer sizes. So instead of guessing, each candidate multiple cuts a copy of the
model under the same policy (a MACs budget, say), and the compact models are timed against each
other where they will run.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from svdtrain.surgery.compact import compact
from svdtrain.surgery.macs import Inputs
from svdtrain.surgery.policies import RankPolicy
from svdtrain.surgery.prune import prune
from svdtrain.surgery.timing import deployed_as, median_seconds
from svdtrain.surgery.walk import copy_model

CANDIDATES = (1, 8, 16, 32, 64)


def fastest_multiple(
    model: nn.Module, example: Inputs, policy_at: Callable[[int], RankPolicy], candidates: tuple[int, ...] = CANDIDATES,
    *, device: str | torch.device | None = None, dtype: torch.dtype | None = None, rounds: int = 5,
    compiled: bool = False,
) -> tuple[int, dict[int, float]]:  # fmt: skip
    """The rank multiple whose compact model runs fastest on ``example``, and each candidate's
    median seconds. ``policy_at(m)`` is the policy with ranks in multiples of ``m``
    (``lambda m: svdtrain.MacsBudget(x, reduction=2, multiple=m)``), so every candidate meets the
    same target; one it cannot meet (a multiple wider than a layer) is left out. Timed on a
    copy on ``device`` in ``dtype``, as ``Speedup`` times; ``compiled``: each under
    ``torch.compile`` (where the model will run compiled, the widths inductor's kernels like can
    differ from eager's). ``model`` is not changed.

    Raises:
        ValueError: no candidate meets the policy.
    """
    compacts: dict[int, nn.Module] = {}
    for multiple in candidates:
        trial = copy_model(model)
        try:
            prune(trial, policy_at(multiple))
        except ValueError:  # out of reach at this multiple
            continue
        compacts[multiple] = compact(trial, example).eval()
    if not compacts:
        raise ValueError(f"no rank multiple of {', '.join(map(str, candidates))} meets the policy")
    moved = [deployed_as(small, example, device, dtype) for small in compacts.values()]
    seconds = dict(zip(compacts, median_seconds([small for small, _ in moved], moved[0][1], rounds, compiled=compiled)))
    return min(seconds, key=seconds.get), seconds
