"""SVD-form modules, one file per layer kind, and the registry that maps dense types to them."""

from svdtrain.layers.base import SVDLayer
from svdtrain.layers.conv import SVDConv
from svdtrain.layers.linear import SVDLinear
from svdtrain.layers.registry import HANDLERS, UnsupportedLayer, handler_for, register

__all__ = ["HANDLERS", "SVDConv", "SVDLayer", "SVDLinear", "UnsupportedLayer", "handler_for", "register"]
