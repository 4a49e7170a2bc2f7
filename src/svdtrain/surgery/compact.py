"""compact: a copy of an SVD model made only of standard torch layers."""

from __future__ import annotations

import copy

import torch
from torch import nn

from svdtrain.layers import SVDLayer
from svdtrain.surgery.macs import record_input_shapes
from svdtrain.surgery.walk import replace_modules, require_svd_layers


def compact(model: nn.Module, example_input: torch.Tensor | tuple | None = None) -> nn.Module:
    """Return a copy of ``model`` in which each SVD layer is a plain torch layer pair or layer.

    Each SVD layer becomes two thin layers (rank r) when they cost fewer MACs than one
    dense layer, else it is merged back into one dense layer, so no layer costs more than
    the original. With ``example_input`` the costs use the real input shapes; without it,
    a bound per output position that can only favour the dense layer. The copy holds no
    svdtrain classes: it loads, runs, scripts and exports without svdtrain. ``model`` is
    not changed.

    Raises:
        ValueError: the model has no SVD layers.
    """
    if isinstance(model, SVDLayer):
        shape = None
        if example_input is not None:
            shape = record_input_shapes(model, example_input)[""]
        return model.to_compact(shape)
    require_svd_layers(model)
    new = copy.deepcopy(model)
    shapes = record_input_shapes(new, example_input) if example_input is not None else {}
    replacements = {id(layer): layer.to_compact(shapes.get(name)) for name, layer in require_svd_layers(new)}
    replace_modules(new, replacements)
    return new
