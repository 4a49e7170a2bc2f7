"""Choosing each layer's deployed form by measured time instead of by MACs.

Fewer MACs is not always less time: on a CPU a thin 1x1 conv over a large feature map
is bound by memory traffic, and the pair writes one more activation than the dense op.
Timing both forms on the layer's real input shape, on the device and in the dtype that will
run the model, settles it. On a GPU each timed call is synchronized, so the time is the
kernels', not the launch's.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from functools import partial
from typing import Callable

import torch
from torch import nn

from svdtrain.surgery.walk import copy_model
from svdtrain.tasks.base import tensors_of, to_device

COMPILED_VARIANTS = 4096  # dynamo's recompile limits while timing compiled modules (its default: 8)


def interleaved_medians(calls: list[Callable[[], object]], rounds: int, warmup: int = 2,
                        sync: Callable[[], None] = lambda: None) -> list[float]:  # fmt: skip
    """Median seconds of each zero-argument call, timed interleaved (A B A B ...) so machine
    noise hits all alike; the first ``warmup`` rounds are not counted. ``sync`` waits for the
    device (``torch.cuda.synchronize``) before each clock reading."""
    times: list[list[float]] = [[] for _ in calls]
    for index in range(warmup + rounds):
        for call, bucket in zip(calls, times):
            sync()
            start = time.perf_counter()
            call()
            sync()
            if index >= warmup:
                bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


@torch.no_grad()
def median_seconds(
    candidates: list[nn.Module], inputs: torch.Tensor | tuple | dict, rounds: int = 9, warmup: int = 2, *,
    compiled: bool = False,
) -> list[float]:  # fmt: skip
    """Median seconds per forward of each module on ``inputs`` (a tensor, a tuple of positional
    inputs or a dict of keyword inputs), timed interleaved, synchronized on a GPU.

    ``compiled``: each module under ``torch.compile`` (static shapes, the inductor settings in
    force), compiled in the first warm-up round. Dynamo keys its compiled code by the forward's
    source, so many Linear modules of other shapes would exhaust its recompile limit and run
    eager again without a word; the limit is lifted while timing."""
    runs = [torch.compile(module, dynamic=False) for module in candidates] if compiled else candidates
    calls = [partial(_call, run, inputs) for run in runs]
    limits = dict(recompile_limit=COMPILED_VARIANTS, accumulated_recompile_limit=COMPILED_VARIANTS)
    with torch._dynamo.config.patch(**limits) if compiled else contextlib.nullcontext():
        return interleaved_medians(calls, rounds, max(warmup, int(compiled)), sync=_synchronizer(inputs))


def _synchronizer(inputs: torch.Tensor | tuple | dict) -> Callable[[], None]:
    devices = {tensor.device for tensor in tensors_of(inputs) if tensor.device.type == "cuda"}
    return partial(torch.cuda.synchronize, next(iter(devices))) if devices else (lambda: None)


def deployed_as(
    model: nn.Module, inputs: torch.Tensor | tuple | dict, device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[nn.Module, torch.Tensor | tuple | dict]:  # fmt: skip
    """A copy of ``model``, and ``inputs``, as they will run: on ``device``, floating values in
    ``dtype`` (token ids stay integers); ``model`` and ``inputs`` themselves where nothing changes."""
    if device is None and dtype is None:
        return model, inputs
    return copy_model(model).to(device=device, dtype=dtype).eval(), to_device(inputs, device, dtype)


def _call(module: nn.Module, inputs: torch.Tensor | tuple | dict) -> object:
    if isinstance(inputs, dict):
        return module(**inputs)
    return module(*inputs) if isinstance(inputs, tuple) else module(inputs)


def faster_form(dense: nn.Module, factored: nn.Module, inputs: tuple, rounds: int = 9, *,
                device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                compiled: bool = False) -> nn.Module:  # fmt: skip
    """Whichever of two equivalent modules runs faster on ``inputs`` (positional), timed on
    ``device`` in ``dtype`` (default: where and as the modules are), each compiled if ``compiled``."""
    (timed_dense, moved), (timed_factored, _) = (deployed_as(m, inputs, device, dtype) for m in (dense, factored))
    dense_s, factored_s = median_seconds([timed_dense.eval(), timed_factored.eval()], moved, rounds, compiled=compiled)
    return factored if factored_s < dense_s else dense
