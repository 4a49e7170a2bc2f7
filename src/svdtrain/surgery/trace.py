"""One instrumented forward pass: what each module saw, what it costs, and which factored
weights are read from outside their own module's forward.

The last matters for deployment: a weight that other code reads directly (Hugging Face's ViT
reads ``projection.weight.dtype``; MultiheadAttention reads ``out_proj.weight``) must stay a
weight of its own module, so that module cannot be swapped for a thin pair.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrize import ParametrizationList
from torch.overrides import TorchFunctionMode

from svdtrain.layers import WeightKind, kind_for


def _shape(x: object) -> torch.Size | None:
    if isinstance(x, nn.utils.rnn.PackedSequence):
        return x.data.shape
    return x.shape if isinstance(x, torch.Tensor) else None


@dataclass
class Trace:
    shapes: dict[str, torch.Size] = field(default_factory=dict)  # module fqn -> first input's shape (first call)
    calls: dict[str, list[tuple[torch.Size | None, int]]] = field(default_factory=dict)  # fqn -> [(shape, dense MACs)]
    products: dict[str, int] = field(default_factory=dict)  # weightless matmuls (attention scores and values)
    # Factored weights whose module must keep its type: read outside the module's forward, or the
    # module called with an input only its own type takes (a PackedSequence into an RNN).
    read_outside: set[str] = field(default_factory=set)


class _AttentionProducts(TorchFunctionMode):
    """Counts F.scaled_dot_product_attention and matmuls of two activations (no parameters)."""

    def __init__(self, trace: Trace, where: list[str], counted_by_module: set[str]) -> None:
        super().__init__()
        self.trace, self.where, self.counted_by_module = trace, where, counted_by_module

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        macs = 0
        if any(fqn in self.counted_by_module for fqn in self.where):
            pass  # inside a module whose kind counts its own products (MultiheadAttention)
        elif func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            macs = q.shape[:-1].numel() * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        elif func in (torch.matmul, torch.bmm, torch.Tensor.matmul, torch.Tensor.__matmul__) and len(args) == 2:
            a, b = args
            if all(isinstance(t, torch.Tensor) and not isinstance(t, nn.Parameter) and t.dim() >= 3 for t in (a, b)):
                macs = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]).numel() * a.shape[-2] * a.shape[-1] * b.shape[-1]
        if macs:
            key = self.where[-1] if self.where else "<model>"
            self.trace.products[key] = self.trace.products.get(key, 0) + macs
        return func(*args, **kwargs)


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.train(mode)


def trace_forward(model: nn.Module, example_input: torch.Tensor | tuple | dict) -> Trace:
    """Run ``model`` once on ``example_input`` (a tensor, a tuple of positional inputs, or a
    dict of keyword inputs) in eval mode without gradients, recording a :class:`Trace`."""
    trace, active, stack = Trace(), set(), []
    names = {id(m): fqn for fqn, m in model.named_modules()}
    counted_by_module = {fqn for fqn, m in model.named_modules()
                         if kind_for(m) is not None and type(kind_for(m)).product_macs is not WeightKind.product_macs}
    handles = []

    def before(module, args, kwargs):
        active.add(id(module))
        stack.append(names.get(id(module), ""))

    def after(module, args, kwargs, output):
        try:
            record(module, args, kwargs, output)
        finally:  # only now: counting reads the module's own weights
            active.discard(id(module))
            stack.pop()

    def record(module, args, kwargs, output):
        fqn = names[id(module)]
        kind = kind_for(module)
        if isinstance(module, ParametrizationList):
            owner_fqn, _, param = fqn.rpartition(".parametrizations.")
            owner = model.get_submodule(owner_fqn) if owner_fqn else model
            if id(owner) not in active:
                trace.read_outside.add(f"{owner_fqn}.{param}" if owner_fqn else param)
        elif kind is not None:
            shape = _shape(args[0]) if args else _shape(next(iter(kwargs.values()), None))
            trace.shapes.setdefault(fqn, shape)
            trace.calls.setdefault(fqn, []).append((shape, kind.module_macs(module, args, kwargs, output)))
            if args and isinstance(args[0], nn.utils.rnn.PackedSequence):  # StackedRNN takes tensors only
                trace.read_outside.update(f"{fqn}.{p}" if fqn else p for p in getattr(module, "parametrizations", {}))
            products = kind.product_macs(module, args, kwargs)
            if products is not None:
                trace.products[fqn] = trace.products.get(fqn, 0) + products
        elif isinstance(module, nn.modules.conv._ConvNd):  # Conv3d, ConvTranspose: counted, never factored
            trace.calls.setdefault(fqn, []).append((_shape(args[0]), _conv_macs(module, args[0], output)))

    for module in model.modules():
        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True, always_call=True))
    try:
        with _eval(model), torch.no_grad(), _AttentionProducts(trace, stack, counted_by_module):
            if isinstance(example_input, dict):
                model(**example_input)
            elif isinstance(example_input, tuple):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return trace


def _conv_macs(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> int:
    k = torch.Size(module.kernel_size).numel()
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return x.numel() * (module.out_channels // module.groups) * k
    return output.numel() * (module.in_channels // module.groups) * k
