"""The embedded end-to-end demo: the paper's whole method on scikit-learn's digits.

dense training -> decompose (SVD init) -> SVD training (orthogonality + sparsity)
-> energy pruning -> fine-tuning (orthogonality only) -> compact, in a minute or two on CPU.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Callable, Literal

import torch
from pydantic import Field
from torch import nn

from svdtrain.data import load_digits_split, tensor_batches
from svdtrain.linalg import SCHEMES, SPARSITY_KINDS, check_energy
from svdtrain.models import DigitsCNN
from svdtrain.pipeline.config.options import (
    NonNegative, NonNegativeInt, Positive, PositiveEpochs, PositiveInt, checked, option, validate_options,
)  # fmt: skip
from svdtrain.surgery import Energy, compact, count_macs, count_params, decompose, factored_weights, prune
from svdtrain.train.loop import evaluate, train_epoch
from svdtrain.train.regularization import Regularization


@dataclass(frozen=True)
class DemoConfig:
    seed: NonNegativeInt = option(0, "seed of the data split, initialization and batch order")
    # At most 1024: the widest layer then has 4096 channels, its 3x3 conv alone 600 MB; past that is a slip, not a demo.
    width: Annotated[int, Field(ge=1, le=1024)] = option(32, "DigitsCNN base width (32: 32/64/128 channels)")
    batch_size: PositiveInt = option(64, "training batch size")
    lr: Positive = option(1e-3, "Adam learning rate, as in the official code")
    dense_epochs: PositiveEpochs = option(30, "epochs of dense training")
    svd_epochs: PositiveEpochs = option(30, "epochs of SVD training (orthogonality + sparsity)")
    finetune_epochs: PositiveEpochs = option(15, "epochs of fine-tuning after pruning")
    scheme: Literal[SCHEMES] = option("channel", "conv kernels as matrices: channel or spatial")
    sparsity_kind: Literal[SPARSITY_KINDS] = option("hoyer", "sparsity term on s: l1, hoyer or hoyer_square")
    sparsity_weight: NonNegative = option(0.02, "weight of the sparsity term")
    ortho_weight: NonNegative = option(1.0, "weight of the orthogonality term")
    energy: Annotated[float, checked(check_energy)] = option(0.02, "fraction of sum(s^2) each weight may lose when "
                                                             "pruned")  # fmt: skip

    def __post_init__(self) -> None:
        validate_options(self)


def run_demo(config: DemoConfig = DemoConfig(), log: Callable[[str], None] = print) -> dict:
    """Run the demo; returns the report dict (baseline, compact, layers, stages, config)."""
    torch.manual_seed(config.seed)
    x_train, y_train, x_test, y_test = load_digits_split(seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    example = x_test[:1]
    stages: dict[str, dict] = {}

    def fit(model: nn.Module, epochs: int, regularization: Regularization, stage: str) -> None:
        start = time.perf_counter()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)  # sync-free steps
        for _ in range(epochs):
            train_epoch(model, tensor_batches(x_train, y_train, config.batch_size, generator), optimizer, regularization)
        accuracy = evaluate(model, tensor_batches(x_test, y_test, 512))
        stages[stage] = {"accuracy": accuracy, "seconds": round(time.perf_counter() - start, 2), "epochs": epochs}
        log(f"{stage:<10} {epochs:3d} epochs  test accuracy {accuracy:.4f}  ({stages[stage]['seconds']:.1f} s)")

    dense = DigitsCNN(config.width)
    fit(dense, config.dense_epochs, Regularization(), "dense")

    model = decompose(copy.deepcopy(dense), scheme=config.scheme, init="svd")
    full_ranks = {name: handle.full_rank for name, handle in factored_weights(model).items()}
    svd_reg = Regularization(config.ortho_weight, config.sparsity_weight, config.sparsity_kind)
    fit(model, config.svd_epochs, svd_reg, "svd_train")

    ranks = prune(model, Energy(config.energy))
    pruned_accuracy = evaluate(model, tensor_batches(x_test, y_test, 512))
    stages["prune"] = {"accuracy": pruned_accuracy, "seconds": 0.0}
    log(f"{'prune':<10} energy {config.energy}  test accuracy {pruned_accuracy:.4f}")
    fit(model, config.finetune_epochs, Regularization(ortho_weight=config.ortho_weight), "finetune")

    small = compact(model, example)
    compact_accuracy = evaluate(small, tensor_batches(x_test, y_test, 512))
    return {
        "baseline": {
            "accuracy": stages["dense"]["accuracy"],
            "macs": count_macs(dense, example),
            "params": count_params(dense),
        },
        "compact": {"accuracy": compact_accuracy, "macs": count_macs(small, example), "params": count_params(small)},
        "layers": [{"name": name, "full_rank": full_ranks[name], "rank": rank} for name, rank in ranks.items()],
        "stages": stages,
        "config": asdict(config),
    }
