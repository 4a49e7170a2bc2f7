"""Finding SVD layers in a model and swapping modules in place."""

from __future__ import annotations

from torch import nn

from svdtrain.layers import SVDLayer


def svd_layers(model: nn.Module) -> list[tuple[str, SVDLayer]]:
    """(qualified name, layer) of every SVD layer, in module order; shared layers once."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SVDLayer)]


def require_svd_layers(model: nn.Module) -> list[tuple[str, SVDLayer]]:
    layers = svd_layers(model)
    if not layers:
        raise ValueError("model has no SVD layers; call svdtrain.decompose(model) first")
    return layers


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
