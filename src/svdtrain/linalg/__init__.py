"""Pure tensor math: reshapes, factor initialization, penalties, rank rules. No modules."""

from svdtrain.linalg.factors import (
    INITS,
    check_init,
    initial_factors,
    lowrank_svd_factors,
    random_factors,
    resolve_rank,
    svd_factors,
)
from svdtrain.linalg.penalties import (
    SPARSITY_KINDS,
    check_sparsity_kind,
    orthogonality_penalties,
    orthogonality_penalty,
    smaller_grams,
    sparsity_penalties,
    sparsity_penalty,
)
from svdtrain.linalg.rank import (
    check_energy,
    check_positive_int,
    check_threshold,
    energy_rank,
    importance_order,
    threshold_rank,
)
from svdtrain.linalg.reshape import (
    SCHEMES,
    VIEWS,
    check_scheme,
    check_view,
    kernel_to_matrix,
    matrix_to_kernel,
    matrix_to_weight,
    weight_to_matrix,
)

__all__ = [
    "INITS",
    "SCHEMES",
    "SPARSITY_KINDS",
    "VIEWS",
    "check_energy",
    "check_init",
    "check_positive_int",
    "check_scheme",
    "check_sparsity_kind",
    "check_threshold",
    "check_view",
    "energy_rank",
    "importance_order",
    "initial_factors",
    "kernel_to_matrix",
    "lowrank_svd_factors",
    "matrix_to_kernel",
    "matrix_to_weight",
    "orthogonality_penalties",
    "orthogonality_penalty",
    "random_factors",
    "resolve_rank",
    "smaller_grams",
    "sparsity_penalties",
    "sparsity_penalty",
    "svd_factors",
    "threshold_rank",
    "weight_to_matrix",
]
