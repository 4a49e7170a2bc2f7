"""An optimizer's view of a factored model: parameter groups built on purpose, and kept in step
when pruning replaces the factors it holds."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from svdtrain.surgery import factored_weights


def param_groups(model: nn.Module, lr: float, *, weight_decay: float = 0.0, s_lr_scale: float = 1.0) -> list[dict]:
    """Optimizer groups for ``model``: weight decay for ordinary parameters only, U and Vh
    undecayed, and s undecayed at ``s_lr_scale`` times ``lr``.

    U, s and Vh have their own regularizers, and decaying s would add an L2 pull that fights
    the sparsity term (the usual "decay every 2-d tensor" rule would decay U and Vh and spare s).
    Empty groups are left out.

    Example:
        >>> optimizer = torch.optim.AdamW(param_groups(model, 1e-3, weight_decay=0.01))
    """
    handles = factored_weights(model).values()
    singular = {id(handle.s) for handle in handles}
    vectors = {id(p) for handle in handles for p in (handle.U, handle.Vh)}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in singular | vectors], "weight_decay": weight_decay},
        {"params": [p for p in model.parameters() if id(p) in vectors], "weight_decay": 0.0},
        {"params": [p for p in model.parameters() if id(p) in singular], "weight_decay": 0.0, "lr": lr * s_lr_scale},
    ]
    return [{"lr": lr, **group} for group in groups if group["params"]]


def fresh_state(optimizer: torch.optim.Optimizer, group: dict, param: nn.Parameter) -> None:
    """The state a parameter new to ``optimizer`` starts with: none, except a zero buffer under
    momentum SGD (its first step then moves it by its gradient, as a fresh buffer would), since
    fused SGD takes a group whose buffers are all set or all missing."""
    if isinstance(optimizer, torch.optim.SGD) and group["momentum"]:
        optimizer.state[param] = {"momentum_buffer": torch.zeros_like(param)}


@contextmanager
def optimizer_follows(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> Iterator[None]:
    """Within the block, pruning may replace ``model``'s factors; after it, ``optimizer`` holds
    the new ones in place of the old, in the same groups (so a learning-rate scheduler, a
    Trainer or a wrapper holding the optimizer keeps working). Factors that stayed keep their
    state (Adam moments, momentum); replaced ones start fresh. None: nothing to follow. A
    wrapper that keeps the optimizer as ``.optimizer`` (accelerate's) is looked through."""
    before = {name: handle.factors for name, handle in factored_weights(model).items()}
    yield
    if optimizer is None:
        return
    optimizer = getattr(optimizer, "optimizer", optimizer)
    replaced = {}  # id(old factor) -> the new one
    for name, handle in factored_weights(model).items():
        replaced.update({id(old): new for old, new in zip(before.get(name, ()), handle.factors) if old is not new})
    new_ids = {id(new) for new in replaced.values()}
    for group in optimizer.param_groups:
        group["params"] = [replaced.get(id(p), p) for p in group["params"]]
        for param in group["params"]:
            if id(param) in new_ids:
                fresh_state(optimizer, group, param)
    for factors in before.values():
        for old in factors:
            if id(old) in replaced:
                optimizer.state.pop(old, None)
