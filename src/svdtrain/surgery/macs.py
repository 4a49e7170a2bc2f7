"""Multiply-accumulate counting from one traced forward pass.

Counted: every module with a registry entry (Linear, Conv1d/2d, transformers' Conv1D,
LSTM/GRU/RNN per time step times the tokens, MultiheadAttention's projections), Conv3d and
ConvTranspose; a module holding factored weights at the cost of the form ``compact`` would
deploy. Weightless products (attention scores and values) are reported apart, by
:func:`attention_macs`. Everything else (norms, activations, pooling) costs 0 here, as in
most MAC tables.
"""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.surgery.plan import pair_saving, paired
from svdtrain.surgery.trace import Trace, trace_forward
from svdtrain.surgery.walk import by_module, factored_weights

Inputs = torch.Tensor | tuple | dict


def deployed_macs(model: nn.Module, trace: Trace) -> dict[str, int]:
    """MACs per module from ``trace``, each factored weight at its deployed form's cost."""
    groups = by_module(factored_weights(model))
    counts: dict[str, int] = {}
    for fqn, calls in trace.calls.items():
        handles = groups.get(fqn, {})
        # The form is chosen once, on the first call's shape, as compact chooses it; every call pays it.
        pairs = paired(handles, fqn, trace.shapes.get(fqn), trace.read_outside) if handles else set()
        total = 0
        for shape, dense in calls:
            total += dense - round(sum(pair_saving(handles[p], shape) for p in pairs))
        counts[fqn] = total
    return counts


def macs_by_layer(model: nn.Module, example_input: Inputs) -> dict[str, int]:
    """MACs of one forward pass on ``example_input`` (whole batch), per counted module."""
    return deployed_macs(model, trace_forward(model, example_input))


def count_macs(model: nn.Module, example_input: Inputs) -> int:
    """Total MACs of the counted modules in one forward pass. FLOPs are about 2x this."""
    return sum(macs_by_layer(model, example_input).values())


def attention_macs(model: nn.Module, example_input: Inputs) -> dict[str, int]:
    """MACs of weightless products (attention's Q K^T and A V) per module that runs them:
    MultiheadAttention, F.scaled_dot_product_attention and matmuls of two activations.
    Not part of :func:`count_macs`, which counts weights."""
    return trace_forward(model, example_input).products


def record_input_shapes(model: nn.Module, example_input: Inputs) -> dict[str, torch.Size]:
    """First input shape seen by each registered module (keyed by module fqn)."""
    return trace_forward(model, example_input).shapes


def count_params(model: nn.Module) -> int:
    """Number of parameters (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters())
