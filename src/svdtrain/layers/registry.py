"""Registry from dense layer type to the function that builds its SVD form.

Supporting a new layer type is one new file that calls :func:`register`.
"""

from __future__ import annotations

from typing import Callable

from torch import nn


class UnsupportedLayer(Exception):
    """Raised by a handler for a layer it cannot decompose; the message says why."""


Handler = Callable[..., nn.Module]  # handler(module, *, scheme, init, rank) -> SVDLayer
HANDLERS: dict[type[nn.Module], Handler] = {}


def register(layer_type: type[nn.Module]) -> Callable[[Handler], Handler]:
    def add(handler: Handler) -> Handler:
        HANDLERS[layer_type] = handler
        return handler

    return add


def handler_for(module: nn.Module) -> Handler | None:
    """The handler for ``module``'s exact type, or for a registered base class.

    Subclasses are passed to the base handler, which rejects those whose forward it
    cannot reproduce (e.g. MultiheadAttention's out_proj, a Linear subclass whose weight
    is read directly).
    """
    for cls in type(module).__mro__:
        if cls in HANDLERS:
            return HANDLERS[cls]
    return None
