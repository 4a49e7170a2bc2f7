"""Cuts that keep every parameter's shape, for a model a framework holds wrapped (DDP under
Hugging Face Trainer or Lightning, a compiled step): the cut is made on a copy, its factors are
written back into the first ``k`` slots of the full-size parameters, and the rest are held at
zero (their gradients masked, their values zeroed again after each optimizer step). The same
parameters stay, so the wrapper, the optimizer and its scheduler keep working; :meth:`RankMasks.
materialize` drops the zeros once training is over, when the optimizer is rebuilt anyway."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from svdtrain.surgery import factored_weights
from svdtrain.surgery.sharded_groups import local_range


class RankMasks:
    """The live rank of each factored weight of ``model`` cut with :meth:`cut` (empty: none)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.live: dict[str, int] = {}
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def __bool__(self) -> bool:
        return bool(self.live)

    def cut(self, prune: Callable[[nn.Module], dict[str, int]], optimizer: torch.optim.Optimizer | None) -> dict[str, int]:
        """``prune`` (a physical cut, in place) applied to a copy, its factors written back padded
        with zeros; ``optimizer``'s state for the factors starts afresh, as for replaced ones."""
        self._unhook()  # tensor hooks do not survive a deepcopy
        small = copy.deepcopy(self.model)
        ranks = prune(small)
        handles, cut = factored_weights(self.model), factored_weights(small)
        with torch.no_grad():
            for name, handle in handles.items():
                for full, part, axis in zip(handle.factors, cut[name].factors, (1, 0, 0)):
                    full.zero_()
                    full.narrow(axis, 0, cut[name].rank).copy_(part)
        self.hold({name: layer.rank for name, layer in cut.items()}, optimizer)
        return ranks

    def hold(self, live: dict[str, int], optimizer: torch.optim.Optimizer | None) -> None:
        """Hold the slots past ``live[name]`` at zero from now on (the values written already);
        ``optimizer``'s state for the factors starts afresh."""
        self._unhook()
        self.live.update(live)
        _restart(optimizer, [p for handle in factored_weights(self.model).values() for p in handle.factors])
        self._hook()

    def rezero(self) -> None:
        """Zero the dead slots again (after an optimizer step: momentum moves them)."""
        if not self.live:  # called every step: no model walk where nothing is masked
            return
        handles = factored_weights(self.model)
        with torch.no_grad():
            for name, k in self.live.items():
                for tensor, axis in zip(handles[name].factors, (1, 0, 0)):
                    start, length = local_range(tensor, axis)  # a shard holds [start, start + length)
                    local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
                    dead = min(max(k - start, 0), length)
                    local.narrow(axis, dead, length - dead).zero_()

    def materialize(self) -> None:
        """Drop the dead slots: each weight becomes its live rank (new parameters: rebuild the optimizer)."""
        self._unhook()
        handles = factored_weights(self.model)
        for name, k in self.live.items():
            U, s, Vh = handles[name].factors
            handles[name].set_factors_(U[:, :k].detach(), s[:k].detach(), Vh[:k].detach())
        self.live = {}

    def restore(self, live: dict[str, int]) -> None:
        """Masks as saved (:attr:`live`), on a model whose values already hold the zeros."""
        self._unhook()
        self.live = dict(live)
        if self.live:
            self._hook()

    def _hook(self) -> None:
        handles = factored_weights(self.model)
        for name, k in self.live.items():
            for tensor, axis in zip(handles[name].factors, (1, 0, 0)):
                if isinstance(tensor, DTensor):  # FSDP2 reduce-scatters outside autograd: rezero() alone
                    continue
                mask = torch.zeros(tensor.shape[axis], dtype=tensor.dtype, device=tensor.device)
                mask[:k] = 1
                shape = [-1 if dim == axis else 1 for dim in range(tensor.dim())]
                self._hooks.append(tensor.register_hook(lambda grad, m=mask.view(shape): grad * m))

    def _unhook(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


def _restart(optimizer: torch.optim.Optimizer | None, params: list[nn.Parameter]) -> None:
    """Zero ``optimizer``'s state for ``params`` (moments, momentum, step counts): what a fresh
    parameter starts with, kept in place for optimizers that want all-or-none state (fused SGD)."""
    if optimizer is None:
        return
    optimizer = getattr(optimizer, "optimizer", optimizer)
    for param in params:
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, torch.Tensor):
                value.zero_()
