"""FactoredWeight: one factored weight of a module, the unit svdtrain decomposes, regularizes,
prunes and deploys. Named ``"<module fqn>.<param>"`` (e.g. ``"encoder.lstm.weight_hh_l1"``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from svdtrain.layers.parametrization import SVDWeight
from svdtrain.layers.registry import WeightKind, kind_for
from svdtrain.linalg import importance_order, orthogonality_penalty


class FactoredWeight:
    """A handle on ``module.<param>`` parametrized by :class:`SVDWeight`. Holds no tensors of
    its own: U, s, Vh are read from the module each time, so handles never go stale."""

    def __init__(self, name: str, module: nn.Module, param: str) -> None:
        self.name, self.module, self.param = name, module, param

    @property
    def _originals(self) -> nn.Module:
        return self.module.parametrizations[self.param]

    @property
    def parametrization(self) -> SVDWeight:
        return self._originals[0]

    @property
    def kind(self) -> WeightKind:
        return kind_for(self.module)

    @property
    def U(self) -> nn.Parameter:  # (m, r)
        return self._originals.original0

    @property
    def s(self) -> nn.Parameter:  # (r,)
        return self._originals.original1

    @property
    def Vh(self) -> nn.Parameter:  # (r, n)
        return self._originals.original2

    @property
    def factors(self) -> tuple[nn.Parameter, nn.Parameter, nn.Parameter]:
        return self.U, self.s, self.Vh

    @property
    def view(self) -> str:
        return self.parametrization.view

    @property
    def rank(self) -> int:
        return self.s.shape[0]

    @property
    def full_rank(self) -> int:
        return min(self.U.shape[0], self.Vh.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """The factored matrix's shape (m, n)."""
        return self.U.shape[0], self.Vh.shape[1]

    def matrix(self) -> torch.Tensor:
        """U diag(s) Vh, shape (m, n)."""
        return (self.U * self.s) @ self.Vh

    def orthogonality_penalty(self) -> torch.Tensor:
        return orthogonality_penalty(self.U) + orthogonality_penalty(self.Vh)

    @torch.no_grad()
    def keep_(self, rank: int) -> None:
        """Keep the ``rank`` largest |s| with their singular vectors; in place.

        The factors are replaced by smaller parameters (not masked): rebuild any optimizer.
        """
        if not 1 <= rank <= self.rank:
            raise ValueError(f"rank for {self.name!r} must be in [1, {self.rank}], got {rank}")
        keep = importance_order(self.s)[:rank]
        if rank == self.rank and torch.equal(keep, torch.arange(rank, device=keep.device)):
            return  # nothing to drop or reorder: the parameters (and an optimizer's hold on them) stay
        self.set_factors_(self.U[:, keep], self.s[keep], self.Vh[keep, :])

    @torch.no_grad()
    def set_factors_(self, U: torch.Tensor, s: torch.Tensor, Vh: torch.Tensor) -> None:
        """Replace the factors by new ones of any rank (new parameters: rebuild any optimizer)."""
        (m, r), n = U.shape, Vh.shape[1]
        if (m, n) != self.shape or s.shape != (r,) or Vh.shape[0] != r:
            raise ValueError(f"factors of shapes {tuple(U.shape)}, {tuple(s.shape)}, {tuple(Vh.shape)} do not "
                             f"make the {self.shape} matrix of {self.name!r}")
        for index, tensor in enumerate((U, s, Vh)):
            old = getattr(self._originals, f"original{index}")
            new = tensor.to(dtype=old.dtype, device=old.device).contiguous()
            setattr(self._originals, f"original{index}", nn.Parameter(new, old.requires_grad))

    def __repr__(self) -> str:
        return f"FactoredWeight({self.name!r}, view={self.view}, shape={self.shape}, rank={self.rank}/{self.full_rank})"


def is_factored(module: nn.Module, param: str) -> bool:
    return parametrize.is_parametrized(module, param) and isinstance(module.parametrizations[param][0], SVDWeight)


def factor_weight(module: nn.Module, param: str, view: str, *, init: str, rank: int | float | None) -> None:
    """Register an :class:`SVDWeight` on ``module.<param>``, in place."""
    weight = getattr(module, param)
    parametrize.register_parametrization(module, param, SVDWeight(view, weight.shape, init=init, rank=rank))
    if init == "random":  # a from-scratch start is for registration only: a weight assigned later is factored as given
        module.parametrizations[param][0].init = "svd"
    module.parametrizations[param]._register_load_state_dict_pre_hook(_take_saved_rank, with_module=True)


def _take_saved_rank(originals: nn.Module, state: dict, prefix: str, *args) -> None:
    """Before a state dict loads: resize U, s, Vh to the rank the state holds (a model pruned
    or cut before it was saved), so that a freshly factored model loads any checkpoint of its
    own architecture through plain ``load_state_dict``, which Hugging Face Trainer, Lightning
    and accelerate call. The factors become new parameters: build the optimizer after loading.
    Shapes that make another matrix are left for ``load_state_dict`` to report."""
    saved = [state.get(f"{prefix}original{index}") for index in range(3)]
    if not all(isinstance(tensor, torch.Tensor) for tensor in saved):
        return
    U, s, Vh = saved
    old = [getattr(originals, f"original{index}") for index in range(3)]
    rank = s.shape[0] if s.dim() == 1 else -1
    if rank == old[1].shape[0] or U.shape != (old[0].shape[0], rank) or Vh.shape != (rank, old[2].shape[1]) or not 1 <= rank <= min(U.shape[0], Vh.shape[1]):
        return
    for index, (tensor, was) in enumerate(zip(saved, old)):
        fresh = torch.empty(tensor.shape, dtype=was.dtype, device=was.device)
        setattr(originals, f"original{index}", nn.Parameter(fresh, was.requires_grad))
