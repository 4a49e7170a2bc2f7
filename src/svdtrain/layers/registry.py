"""Registry from module type to the kind of weights it holds: which of them can be factored,
as which matrix, what each deployed form costs, and how the module is deployed.

Supporting a new layer type is one new file that subclasses :class:`WeightKind` and calls
:func:`register` (with the class, or its dotted name for optional libraries, so that
transformers is never imported for it).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


Factors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # U (m, r), s (r,), Vh (r, n)


class UnsupportedLayer(Exception):
    """A module (or one of its weights) that cannot be factored; the message says why."""


class WeightKind:
    """What svdtrain knows about one module type. Subclasses override what differs."""

    def weight_names(self, module: nn.Module) -> list[str]:
        """Names of the module's factorizable weights (raise UnsupportedLayer to refuse all)."""
        raise NotImplementedError

    def view(self, module: nn.Module, name: str, scheme: str) -> str:
        """The matrix view (``svdtrain.linalg.VIEWS``) the weight ``name`` is factored in."""
        return "matrix"

    def tokens(self, module: nn.Module, name: str, input_shape: torch.Size) -> int:
        """How many times per forward the weight's matrix multiplies a vector."""
        raise NotImplementedError

    def dense_macs(self, module: nn.Module, name: str, input_shape: torch.Size) -> int:
        """MACs of the weight's dense product per forward on an input of this shape."""
        shape = weight_shape(module, name)
        return self.tokens(module, name, input_shape) * shape.numel()

    def pair_macs(self, module: nn.Module, name: str, input_shape: torch.Size | None, rank: int) -> float | None:
        """MACs of the deployed thin pair at ``rank`` (None: this weight has no pair form and
        always deploys dense). Without ``input_shape``, per token, bounded from above."""
        return None

    def module_macs(self, module: nn.Module, inputs: tuple, kwargs: dict, output: object) -> int:
        """MACs of one call of the module with all its weights dense (its call's positional
        ``inputs`` and keyword ``kwargs``)."""
        raise NotImplementedError

    def deploy(self, module: nn.Module, pairs: dict[str, Factors]) -> nn.Module:
        """The module to deploy: ``module`` itself (its factored weights are then baked into
        dense tensors by the caller) or a new one built from plain torch layers, with the
        weights in ``pairs`` {weight name: (U, s, Vh)} as thin pairs. ``module`` is still
        parametrized here: reading a weight gives its current (low-rank) value. A kind with
        no pair form never gets any pairs."""
        return module

    def sample_inputs(self, module: nn.Module, input_shape: torch.Size, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Random positional inputs for one call of the module whose first input has
        ``input_shape`` (``like``'s dtype and device), to time its forms alone."""
        return (torch.randn(input_shape, dtype=like.dtype, device=like.device),)

    def settle(self, model: nn.Module) -> None:
        """Adjust, in place, what surrounds deployed modules in the compact ``model`` (a parent
        that reads attributes only the original types have); called once per compact."""

    def swappable(self, module: nn.Module) -> bool:
        """Whether the module may be replaced by another module type when deployed."""
        return True

    def deployed_form(self, deployed: nn.Module, name: str) -> str:
        """"pair" or "dense": how weight ``name`` ended up in ``deployed``, a module that
        :meth:`deploy` returned in place of the original (a different type)."""
        return "pair" if isinstance(deployed, nn.Sequential) else "dense"

    def refresh(self, module: nn.Module) -> None:
        """Rebuild whatever the module keeps of its weights' values between calls (nn.LSTM's
        flat weights): before a copy, and once factored weights are plain parameters again."""

    def matrix_inputs(self, module: nn.Module, name: str, inputs: tuple, kwargs: dict) -> torch.Tensor | None:
        """The vectors weight ``name``'s matrix multiplies in this call, as rows (N, n) (its
        outputs are rows @ matrix.T, or rows @ matrix where :meth:`inputs_enter_rows`), for
        activation-aware truncation; None where they cannot be seen from the module's inputs
        (a recurrent W_hh)."""
        return None

    def inputs_enter_rows(self, module: nn.Module, name: str) -> bool:
        """Whether :meth:`matrix_inputs` multiply the matrix's rows rather than its columns (a
        spatial-wise conv: its vertical patches meet M (in*kh, out*kw) from the left)."""
        return False

    def product_macs(self, module: nn.Module, inputs: tuple, kwargs: dict) -> int | None:
        """MACs of weightless products the module runs itself (attention scores and values),
        reported apart from its weights' MACs; None when it runs none."""
        return None


KINDS: dict[type | str, WeightKind] = {}


def register(layer_type: type[nn.Module] | str):
    """Class decorator: ``@register(nn.Linear) class LinearKind(WeightKind)`` registers an
    instance. ``layer_type`` may be a dotted class name (``"transformers.pytorch_utils.Conv1D"``)."""

    def add(kind_cls: type[WeightKind]) -> type[WeightKind]:
        KINDS[layer_type] = kind_cls()
        return kind_cls

    return add


def kind_for(module: nn.Module) -> WeightKind | None:
    """The kind registered for ``module``'s type or its nearest registered base class."""
    for cls in plain_type(module).__mro__:
        kind = KINDS.get(cls) or KINDS.get(f"{cls.__module__}.{cls.__qualname__}")
        if kind is not None:
            return kind
    return None


def plain_type(module: nn.Module) -> type:
    """The module's own class, not the subclass parametrize creates for a parametrized module."""
    cls = type(module)
    return cls.__bases__[0] if parametrize.is_parametrized(module) else cls


def view_of(module: nn.Module, name: str) -> str:
    """The matrix view a factored weight ``module.<name>`` was factored in."""
    return module.parametrizations[name][0].view


def weight_shape(module: nn.Module, name: str) -> torch.Size:
    """The shape of ``module.<name>`` without rebuilding a factored weight to read it."""
    if parametrize.is_parametrized(module, name):
        return torch.Size(module.parametrizations[name][0].weight_shape)
    return getattr(module, name).shape
