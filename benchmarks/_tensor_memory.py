"""Exact tensor memory of one training step, shared by the training-overhead benchmarks."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize


def training_tensor_bytes(model: nn.Module, loss_of: Callable[[], torch.Tensor]) -> int:
    """Bytes a training step needs at its peak (the end of the forward pass): parameters, their
    gradients and Adam's two moments (4 x parameter bytes), plus every tensor autograd saves for
    the backward pass, counted once per storage. The forward runs under ``parametrize.cached()``,
    as the training loop runs it."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), parametrize.cached():
        loss_of()
    return 4 * sum(p.numel() * p.element_size() for p in model.parameters()) + sum(saved.values())
