"""Finding factored weights in a model and swapping modules in place."""

from __future__ import annotations

import copy

import torch
from torch import nn

from svdtrain.layers import FactoredWeight, is_factored


def factored_weights(model: nn.Module) -> dict[str, FactoredWeight]:
    """{"<module fqn>.<param>": handle} for every factored weight, in module order; a module
    shared by two parents appears once."""
    found: dict[str, FactoredWeight] = {}
    for fqn, module in model.named_modules():
        for param in getattr(module, "parametrizations", {}):
            if is_factored(module, param):
                name = f"{fqn}.{param}" if fqn else param
                found[name] = FactoredWeight(name, module, param)
    return found


def tied_names(model: nn.Module) -> set[str]:
    """Parameter names that share their tensor with another name (saved once)."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return {name for group in names.values() if len(group) > 1 for name in group}


def require_factored_weights(model: nn.Module) -> dict[str, FactoredWeight]:
    weights = factored_weights(model)
    if not weights:
        raise ValueError("model has no factored weights; call svdtrain.decompose(model) first")
    return weights


def by_module(weights: dict[str, FactoredWeight]) -> dict[str, dict[str, FactoredWeight]]:
    """{module fqn: {param: handle}}."""
    grouped: dict[str, dict[str, FactoredWeight]] = {}
    for name, handle in weights.items():
        fqn = name[: -len(handle.param)].rstrip(".")
        grouped.setdefault(fqn, {})[handle.param] = handle
    return grouped


def replace_modules(model: nn.Module, replacements: dict[int, nn.Module]) -> None:
    """Swap every occurrence of each module (keyed by ``id(old)``) for its replacement, in place.

    Walks all paths, so a module shared by two parents is replaced in both and stays shared.
    """
    for parent in model.modules():
        # parent._modules, not named_children(): the latter yields a module held under two
        # names of the same parent only once, which would leave the second name dense.
        for child_name, child in list(parent._modules.items()):
            if child is not None and id(child) in replacements:
                setattr(parent, child_name, replacements[id(child)])


def copy_model(model: nn.Module, memo: dict | None = None) -> nn.Module:
    """A deep copy of a model with factored weights (``memo``: ``copy.deepcopy``'s, to put
    something in place of chosen tensors).

    A module may keep values of its factored weights from its last forward (nn.LSTM does, for
    its fused kernel); after a training forward those carry a graph, which ``copy.deepcopy``
    refuses. They are refreshed without a graph first (the next forward refreshes them anyway).
    """
    with torch.no_grad():
        for handles in by_module(factored_weights(model)).values():
            handle = next(iter(handles.values()))
            handle.kind.refresh(handle.module)
        return copy.deepcopy(model, memo)
