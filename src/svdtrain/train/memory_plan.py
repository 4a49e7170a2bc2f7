"""What training a model costs in memory, dense and in SVD form, planned without allocating it.

Build the model on the meta device (``with torch.device("meta"): model = Model(config)``) and
:func:`memory_plan` counts, from shapes alone, the bytes of parameters, gradients and optimizer
state: dense, in full-rank SVD form (U m x r, s, Vh r x n: r = min(m, n), so 2x the parameters of
a square weight), and with a lean start (the factors held to a share of the dense weights'
parameters, :class:`svdtrain.ParamsBudget`, which chooses the exact ranks by energy on real
weights: the plan counts its budget, an upper bound within one rank of one weight). Activations
are not counted: they depend on batch and sequence length, and a factored layer adds its
(batch x r) middle product to them. Under N-way sharding (FSDP2) each process holds 1/N of all
three; under DDP each holds all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from svdtrain.linalg import check_scheme, weight_to_matrix
from svdtrain.surgery.decompose import factorizable


@dataclass(frozen=True)
class MemoryRow:
    """Bytes of one form of the model under training."""

    form: str
    params: int  # parameter count
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.grad_bytes + self.optimizer_bytes

    def per_process(self, world_size: int, sharded: bool) -> int:
        """Bytes each of ``world_size`` processes holds: a 1/N share under FSDP (``sharded``), all under DDP."""
        return -(-self.total_bytes // world_size) if sharded else self.total_bytes

    def to_dict(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes}


def memory_plan(model: nn.Module, *, scheme: str = "channel", lean_start: float = 1.0, optimizer_states: int = 2,
                state_bytes: int = 4) -> list[MemoryRow]:  # fmt: skip
    """Rows for ``model`` (on any device, the meta device included) as dense, full-rank SVD form
    and lean SVD form (``lean_start``: the factors' share of the dense weights' parameters).

    Parameters and gradients take the parameters' own dtype; the optimizer keeps
    ``optimizer_states`` values of ``state_bytes`` each per parameter (Adam: 2 of 4 bytes).
    Weights :func:`svdtrain.decompose` would leave dense (embeddings, tied heads) stay dense in
    every row."""
    check_scheme(scheme)
    if not (isinstance(lean_start, (int, float)) and lean_start > 0):
        raise ValueError(f"lean_start must be a number > 0, got {lean_start!r}")
    found = factorizable(model, scheme)
    factored = {id(getattr(module, param)) for module, param, _ in found.values()}
    rest = [(p.numel(), p.element_size()) for p in model.parameters() if id(p) not in factored]
    matrices = []
    for module, param, view in found.values():
        weight = getattr(module, param)
        m, n = weight_to_matrix(weight, view).shape
        matrices.append((m, n, weight.element_size()))
    rest_count, rest_bytes = sum(c for c, _ in rest), sum(c * b for c, b in rest)
    dense = sum(m * n for m, n, _ in matrices)
    full = sum(min(m, n) * (m + n + 1) for m, n, _ in matrices)
    lean = min(full, int(lean_start * dense))
    element = matrices[0][2] if matrices else 4

    def row(form: str, factor_count: int) -> MemoryRow:
        count = rest_count + factor_count
        param_bytes = rest_bytes + factor_count * element
        return MemoryRow(form, count, param_bytes, param_bytes, count * optimizer_states * state_bytes)

    return [row("dense", dense), row("svd, full rank", full), row(f"svd, lean start {lean_start:g}", lean)]
