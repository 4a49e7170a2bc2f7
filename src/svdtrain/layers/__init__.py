"""Factored weights: the SVD parametrization, the handle on one factored weight, and the
registry of module kinds (one file per kind: linear, conv, transformers' Conv1D, RNNs,
attention)."""

from svdtrain.layers import attention, conv, hf_conv1d, linear, rnn  # noqa: F401  (register the kinds)
from svdtrain.layers.factored import FactoredWeight, factor_weight, is_factored
from svdtrain.layers.parametrization import SVDWeight
from svdtrain.layers.registry import KINDS, Factors, UnsupportedLayer, WeightKind, kind_for, plain_type, register

__all__ = [
    "KINDS",
    "FactoredWeight",
    "Factors",
    "SVDWeight",
    "UnsupportedLayer",
    "WeightKind",
    "factor_weight",
    "is_factored",
    "kind_for",
    "plain_type",
    "register",
]
