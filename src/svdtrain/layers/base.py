"""SVDLayer: the shared parameterization W = U diag(s) Vh of every SVD-form layer."""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.linalg import importance_order, orthogonality_penalty


class SVDLayer(nn.Module):
    """Base of SVD-form layers: holds U (m, r), s (r,), Vh (r, n) and an optional bias.

    Subclasses say how the matrix maps to their operation and what each form costs.
    ``forward`` picks, per call, whichever of two equivalent computations is cheaper for
    the input's shape: rebuilding the dense weight once and running one op (cheapest at
    full rank, i.e. while SVD-training) or running the two thin ops (cheapest once the
    rank is pruned low).
    """

    def __init__(self, U: torch.Tensor, s: torch.Tensor, Vh: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        if U.dim() != 2 or Vh.dim() != 2 or s.dim() != 1 or not (U.shape[1] == s.shape[0] == Vh.shape[0]):
            raise ValueError(
                f"factor shapes do not chain: U {tuple(U.shape)}, s {tuple(s.shape)}, Vh {tuple(Vh.shape)}"
            )
        self.U = nn.Parameter(U.detach().clone())  # (m, r)
        self.s = nn.Parameter(s.detach().clone())  # (r,)
        self.Vh = nn.Parameter(Vh.detach().clone())  # (r, n)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.full_rank = min(U.shape[0], Vh.shape[1])

    @property
    def rank(self) -> int:
        return self.s.shape[0]

    def weight_matrix(self) -> torch.Tensor:
        """The dense matrix U diag(s) Vh, shape (m, n)."""
        return (self.U * self.s) @ self.Vh

    def orthogonality_penalty(self) -> torch.Tensor:
        return orthogonality_penalty(self.U) + orthogonality_penalty(self.Vh)

    @torch.no_grad()
    def keep_(self, rank: int) -> None:
        """Keep the ``rank`` largest |s| with their singular vectors; in place.

        The parameters are replaced by smaller ones (not masked), so any optimizer built
        on the old ones must be rebuilt.
        """
        if not 1 <= rank <= self.rank:
            raise ValueError(f"rank must be in [1, {self.rank}], got {rank}")
        keep = importance_order(self.s)[:rank]
        for name, tensor in (("U", self.U[:, keep]), ("s", self.s[keep]), ("Vh", self.Vh[keep, :])):
            old = getattr(self, name)
            setattr(self, name, nn.Parameter(tensor.contiguous(), requires_grad=old.requires_grad))

    # Subclasses implement the rest.
    def dense_macs(self, input_shape: torch.Size) -> int:
        """MACs of the single dense op for an input of this shape."""
        raise NotImplementedError

    def factored_macs(self, input_shape: torch.Size) -> int:
        """MACs of the two thin ops for an input of this shape."""
        raise NotImplementedError

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_factored(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to_dense(self) -> nn.Module:
        """A standard torch layer computing the same function (the inverse of from_*)."""
        raise NotImplementedError

    def to_factored(self) -> nn.Sequential:
        """Two standard torch layers of rank r computing the same function."""
        raise NotImplementedError

    def inference_macs(self, input_shape: torch.Size) -> int:
        """MACs of the cheaper deployable form (what :meth:`to_compact` would produce)."""
        return min(self.dense_macs(input_shape), self.factored_macs(input_shape))

    def factored_is_cheaper(self, input_shape: torch.Size | None = None) -> bool:
        raise NotImplementedError

    def to_compact(self, input_shape: torch.Size | None = None) -> nn.Module:
        """Two thin layers when they cost fewer MACs than one dense layer, else the dense one.

        With ``input_shape`` the costs are exact; without it they are bounded per output
        position so that the result never costs more than the dense layer.
        """
        return self.to_factored() if self.factored_is_cheaper(input_shape) else self.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rebuild = self.U.shape[0] * self.rank * self.Vh.shape[1]
        if self.factored_macs(x.shape) < self.dense_macs(x.shape) + rebuild:
            return self.forward_factored(x)
        return self.forward_dense(x)
