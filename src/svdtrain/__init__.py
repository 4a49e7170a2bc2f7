"""svdtrain: SVD training (Yang et al., CVPRW 2020) for PyTorch models.

decompose -> train with orthogonality_loss + sparsity_loss -> prune -> compact; or, in any
training loop, SVDTraining(model, SVDTrainingConfig(...)) with its loss(), gradual_cut(), prune() and compact().
"""

from svdtrain.layers import FactoredWeight, SVDWeight, WeightKind, register
from svdtrain.surgery import (
    Calibration,
    Energy,
    MacsBudget,
    ParamsBudget,
    RankPolicy,
    Ranks,
    Speedup,
    Threshold,
    attention_macs,
    calibrate,
    compact,
    compact_spec,
    count_macs,
    count_params,
    decompose,
    deployed_forms,
    macs_by_layer,
    orthogonality_loss,
    prune,
    rebuild_compact,
    singular_values,
    sparsity_loss,
    factored_weights,
    fastest_multiple,
)
from svdtrain.train.svd_config import SVDTrainingConfig
from svdtrain.train.svd_training import SVDTraining

__version__ = "0.1.0"

__all__ = [
    "FactoredWeight",
    "SVDTraining",
    "SVDTrainingConfig",
    "SVDWeight",
    "WeightKind",
    "Calibration",
    "Energy",
    "MacsBudget",
    "ParamsBudget",
    "RankPolicy",
    "Ranks",
    "Speedup",
    "Threshold",
    "attention_macs",
    "calibrate",
    "compact",
    "compact_spec",
    "count_macs",
    "count_params",
    "decompose",
    "deployed_forms",
    "factored_weights",
    "fastest_multiple",
    "macs_by_layer",
    "orthogonality_loss",
    "prune",
    "rebuild_compact",
    "register",
    "singular_values",
    "sparsity_loss",
]
