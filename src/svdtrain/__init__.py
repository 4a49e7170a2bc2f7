"""svdtrain: SVD training (Yang et al., CVPRW 2020) for PyTorch models.

decompose -> train with orthogonality_loss + sparsity_loss -> prune -> compact.
"""

from svdtrain.layers import SVDConv, SVDLayer, SVDLinear, register
from svdtrain.surgery import (
    compact,
    count_macs,
    count_params,
    decompose,
    energy_for_macs,
    macs_by_layer,
    orthogonality_loss,
    prune,
    ranks_for_macs,
    ranks_for_speedup,
    singular_values,
    sparsity_loss,
    svd_layers,
)

__version__ = "0.1.0"

__all__ = [
    "SVDConv",
    "SVDLayer",
    "SVDLinear",
    "compact",
    "count_macs",
    "count_params",
    "decompose",
    "energy_for_macs",
    "macs_by_layer",
    "orthogonality_loss",
    "prune",
    "ranks_for_macs",
    "ranks_for_speedup",
    "register",
    "singular_values",
    "sparsity_loss",
    "svd_layers",
]
