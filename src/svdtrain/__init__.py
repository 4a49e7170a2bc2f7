"""svdtrain: SVD training (Yang et al., CVPRW 2020) for PyTorch models.

decompose -> train with orthogonality_loss + sparsity_loss -> prune -> compact.
"""

from svdtrain.layers import FactoredWeight, SVDWeight, WeightKind, register
from svdtrain.surgery import (
    Calibration,
    attention_macs,
    calibrate,
    compact,
    compact_spec,
    count_macs,
    count_params,
    decompose,
    deployed_forms,
    energy_for_macs,
    macs_by_layer,
    orthogonality_loss,
    prune,
    ranks_for_macs,
    ranks_for_speedup,
    rebuild_compact,
    singular_values,
    sparsity_loss,
    factored_weights,
)

__version__ = "0.1.0"

__all__ = [
    "FactoredWeight",
    "SVDWeight",
    "WeightKind",
    "Calibration",
    "attention_macs",
    "calibrate",
    "compact",
    "compact_spec",
    "count_macs",
    "count_params",
    "decompose",
    "deployed_forms",
    "energy_for_macs",
    "factored_weights",
    "macs_by_layer",
    "orthogonality_loss",
    "prune",
    "ranks_for_macs",
    "ranks_for_speedup",
    "rebuild_compact",
    "register",
    "singular_values",
    "sparsity_loss",
]
