"""Which factored weights deploy as thin pairs: the one rule ``compact`` and ``count_macs`` share."""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.layers import FactoredWeight, kind_for
from svdtrain.layers.registry import weight_shape


def pair_saving(handle: FactoredWeight, input_shape: torch.Size | None) -> float:
    """MACs the thin pair saves over the dense weight per forward (per token without a shape);
    <= 0 when the pair costs as much or more, or when the weight has no pair form."""
    kind, module = kind_for(handle.module), handle.module
    pair = kind.pair_macs(module, handle.param, input_shape, handle.rank)
    if pair is None:
        return 0.0
    return _dense(handle, input_shape) - pair


def _dense(handle: FactoredWeight, input_shape: torch.Size | None) -> int:
    if input_shape is None:
        return weight_shape(handle.module, handle.param).numel()  # per token / output position
    return kind_for(handle.module).dense_macs(handle.module, handle.param, input_shape)


def can_swap(module: nn.Module, fqn: str, read_outside: set[str]) -> bool:
    """A module may be replaced by a deployed form only if its kind allows it and no factored
    weight of it was seen read from outside its forward."""
    own = {f"{fqn}.{param}" if fqn else param for param in module.parametrizations}
    return kind_for(module).swappable(module) and not own & read_outside


def paired(handles: dict[str, FactoredWeight], fqn: str, input_shape: torch.Size | None,
           read_outside: set[str]) -> set[str]:
    """Params of one module's factored weights that deploy as pairs under the MACs rule."""
    module = next(iter(handles.values())).module
    if not can_swap(module, fqn, read_outside):
        return set()
    return {param for param, handle in handles.items() if pair_saving(handle, input_shape) > 0}
