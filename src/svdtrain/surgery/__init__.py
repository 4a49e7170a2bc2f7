"""Walking and rewriting models: decompose, regularize, rank policies, prune, compact, count MACs."""

from svdtrain.surgery.calibrate import Calibration, calibrate
from svdtrain.surgery.compact import compact, deployed_forms
from svdtrain.surgery.decompose import decompose
from svdtrain.surgery.losses import orthogonality_loss, singular_values, sparsity_loss
from svdtrain.surgery.macs import attention_macs, count_macs, count_params, macs_by_layer
from svdtrain.surgery.multiple import fastest_multiple
from svdtrain.surgery.policies import Energy, MacsBudget, ParamsBudget, RankPolicy, Ranks, Speedup, Threshold
from svdtrain.surgery.prune import prune
from svdtrain.surgery.spec import compact_spec, rebuild_compact
from svdtrain.surgery.walk import copy_model, factored_weights

__all__ = [
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
    "copy_model",
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
    "singular_values",
    "sparsity_loss",
]
