"""compact: a copy of an SVD model made only of standard torch layers."""

from __future__ import annotations

import copy

import torch
from torch import nn

from svdtrain.layers import SVDLayer
from svdtrain.surgery.macs import record_input_shapes
from svdtrain.surgery.timing import faster_form
from svdtrain.surgery.walk import replace_modules, require_svd_layers


CHOICES = ("macs", "measured")


def _deployed(layer: SVDLayer, shape: torch.Size | None, choose: str, rounds: int) -> nn.Module:
    if choose == "measured" and layer.factored_is_cheaper(shape):  # a pair costing more MACs never wins
        return faster_form(layer.to_dense(), layer.to_factored(), shape, rounds)
    return layer.to_compact(shape)


def compact(
    model: nn.Module, example_input: torch.Tensor | tuple | None = None, *, choose: str = "macs", rounds: int = 9
) -> nn.Module:
    """Return a copy of ``model`` in which each SVD layer is a plain torch layer pair or layer.

    Each SVD layer becomes two thin layers (rank r) when they cost fewer MACs than one
    dense layer, else it is merged back into one dense layer, so no layer costs more than
    the original. With ``example_input`` the costs use the real input shapes; without it,
    a bound per output position that can only favour the dense layer. ``choose="measured"``
    (needs ``example_input``, at the batch size you will deploy) also keeps a layer dense
    when its pair, though cheaper in MACs, measures slower here in torch eager (medians of
    ``rounds`` interleaved runs). The copy holds no svdtrain classes: it loads, runs,
    scripts and exports without svdtrain. ``model`` is not changed.

    Raises:
        ValueError: the model has no SVD layers, an unknown ``choose``, or "measured"
            without ``example_input``.
    """
    if choose not in CHOICES:
        raise ValueError(f"unknown choose {choose!r}; valid values are {', '.join(CHOICES)}")
    if choose == "measured" and example_input is None:
        raise ValueError("choose='measured' times each layer on its real input shape: give example_input")
    if isinstance(model, SVDLayer):
        shape = record_input_shapes(model, example_input)[""] if example_input is not None else None
        return _deployed(model, shape, choose, rounds)
    require_svd_layers(model)
    new = copy.deepcopy(model)
    shapes = record_input_shapes(new, example_input) if example_input is not None else {}
    replacements = {
        id(layer): _deployed(layer, shapes.get(name), choose, rounds) for name, layer in require_svd_layers(new)
    }
    replace_modules(new, replacements)
    return new
