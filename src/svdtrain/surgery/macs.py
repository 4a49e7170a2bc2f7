"""Multiply-accumulate counting by forward hooks.

Counted: Conv1d/2d/3d, ConvTranspose, Linear and SVD layers (at the cost of the form
``compact`` would deploy). Everything else (norms, activations, pooling, attention's
matmuls) costs 0 here, as in most MAC tables for CNNs.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from svdtrain.layers import SVDLayer


def _layer_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int | None:
    if isinstance(module, SVDLayer):
        return module.inference_macs(inputs[0].shape)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return inputs[0].numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return None


@contextmanager
def _hooks(model: nn.Module, on_call: Callable[[str, nn.Module, tuple, object], None]) -> Iterator[None]:
    handles = [
        m.register_forward_hook(lambda mod, inp, out, name=name: on_call(name, mod, inp, out))
        for name, m in model.named_modules()
    ]
    was_training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in was_training:
            m.train(mode)


def _run(model: nn.Module, example_input: torch.Tensor | tuple) -> None:
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    with torch.no_grad():
        model(*args)


def macs_by_layer(model: nn.Module, example_input: torch.Tensor | tuple) -> dict[str, int]:
    """MACs of one forward pass on ``example_input`` (whole batch), per counted layer."""
    counts: dict[str, int] = {}

    def on_call(name: str, module: nn.Module, inputs: tuple, output: object) -> None:
        macs = _layer_macs(module, inputs, output)
        if macs is not None:
            counts[name] = counts.get(name, 0) + macs

    with _hooks(model, on_call):
        _run(model, example_input)
    return counts


def count_macs(model: nn.Module, example_input: torch.Tensor | tuple) -> int:
    """Total MACs of one forward pass on ``example_input``. FLOPs are about 2x this."""
    return sum(macs_by_layer(model, example_input).values())


def record_input_shapes(model: nn.Module, example_input: torch.Tensor | tuple) -> dict[str, torch.Size]:
    """Input shape seen by each SVD layer on one forward pass (for exact cost decisions)."""
    shapes: dict[str, torch.Size] = {}

    def on_call(name: str, module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(module, SVDLayer):
            shapes.setdefault(name, inputs[0].shape)

    with _hooks(model, on_call):
        _run(model, example_input)
    return shapes


def count_params(model: nn.Module) -> int:
    """Number of parameters (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters())
