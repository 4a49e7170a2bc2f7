"""Compression quality against the alternatives, on the same budget and the same epochs.

From one pretrained dense checkpoint, every method gets the same number of training epochs
(Adam, lr x0.1 at 60% of each stage; BatchNorm recalibrated after every pruning step):

  svd-<scheme>-<sparsity>   the paper: SVD-train E/2 epochs, prune to the budget (greedy
                            ranks), fine-tune E/2 epochs with orthogonality only
  ... no-ortho / no-sparsity  the paper's ablations: the same without one of the two terms
  truncated-<scheme>-greedy truncated SVD of the pretrained weights, ranks by the same greedy
                            energy rule, fine-tuned E epochs
  truncated-<scheme>-uniform  the same with one kept fraction of rank in every layer
  torch-pruning-l1          structured filter pruning with Torch-Pruning (L1 magnitude, the
                            same ratio in every prunable layer), fine-tuned E epochs

The SVD-trained model of a run is pruned once per budget (its svd-train epochs are shared,
as in `svdtrain sweep`). Prints a table, writes JSON and a Pareto plot (accuracy vs MACs).

    python benchmarks/compression_quality.py --checkpoint runs/cpu/adapt/adapted_dense.pt \\
        --data ../shared/data/cifar10-jpg.tar.gz --train-limit 10000 --epochs 4 \\
        --json runs/bench/compression_quality.json --plot runs/bench/compression_quality.png
    python benchmarks/compression_quality.py --quick     # digits, seconds
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import svdtrain
from svdtrain.data import TensorBatches, load_image_folder
from svdtrain.io import atomic_write_json
from svdtrain.models import build_model
from svdtrain.models.cifar_resnet import CifarResNet
from svdtrain.train import Regularization, evaluate, recalibrate_batchnorm, train_epoch
from svdtrain.train.checkpoint import load_matching, read_state_dict
from svdtrain.pipeline.run_data import digits_arrays

SPARSITY_WEIGHTS = {"hoyer": 0.1, "l1": 0.3, "hoyer_square": 0.01}  # the official ResNet-20 weights (spatial-wise)


@dataclass
class Setup:
    model_name: str
    dense: nn.Module
    train: TensorBatches
    test: TensorBatches
    example: torch.Tensor
    epochs: int
    lr: float


def fit(setup: Setup, model: nn.Module, epochs: int, regularization: Regularization, seed: int) -> None:
    if epochs == 0:
        return
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [max(1, round(0.6 * epochs))], 0.1)
    for epoch in range(epochs):
        setup.train.set_epoch(seed * 1000 + epoch)
        train_epoch(model, setup.train, optimizer, regularization)
        scheduler.step()


def recalibrated(setup: Setup, model: nn.Module) -> nn.Module:
    recalibrate_batchnorm(model, setup.train.batches(augment=True), 50)
    return model


def svd_training(setup: Setup, scheme: str, kind: str, budgets: dict[float, int], ortho: float, sparsity: float):
    model = svdtrain.decompose(copy.deepcopy(setup.dense), scheme=scheme, init="svd")
    fit(setup, model, setup.epochs // 2, Regularization(ortho, sparsity, kind), seed=1)
    for factor, budget in budgets.items():
        pruned = copy.deepcopy(model)
        svdtrain.prune(pruned, svdtrain.MacsBudget(setup.example, max_macs=budget))
        fit(setup, recalibrated(setup, pruned), setup.epochs - setup.epochs // 2, Regularization(ortho), seed=2)
        yield factor, pruned


def uniform_ranks(model: nn.Module, example: torch.Tensor, budget: int) -> dict[str, int]:
    """One kept fraction of every factored weight's rank, the largest that meets ``budget`` (bisection)."""
    weights = svdtrain.factored_weights(model)

    def ranks(fraction: float) -> dict[str, int]:
        return {name: max(1, math.ceil(fraction * handle.rank)) for name, handle in weights.items()}

    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        trial = copy.deepcopy(model)
        svdtrain.prune(trial, svdtrain.Ranks(ranks(middle)))
        low, high = (middle, high) if svdtrain.count_macs(trial, example) <= budget else (low, middle)
    return ranks(low)


def truncated_svd(setup: Setup, scheme: str, allocation: str, budgets: dict[float, int]):
    for factor, budget in budgets.items():
        model = svdtrain.decompose(copy.deepcopy(setup.dense), scheme=scheme, init="svd")
        if allocation == "greedy":
            svdtrain.prune(model, svdtrain.MacsBudget(setup.example, max_macs=budget))
        else:
            svdtrain.prune(model, svdtrain.Ranks(uniform_ranks(model, setup.example, budget)))
        fit(setup, recalibrated(setup, model), setup.epochs, Regularization(), seed=2)
        yield factor, model


def _prunable_ignored(model: nn.Module) -> list[nn.Module]:
    """Layers whose output channels Torch-Pruning must keep: the classifier and, in CIFAR
    ResNets, every conv writing to the residual stream (option-A shortcuts zero-pad channels,
    which no dependency graph can shrink). Prunes each block's inner channels."""
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if isinstance(model, CifarResNet):
        ignored.append(model.conv1)
        ignored += [block.conv2 for stage in (model.layer1, model.layer2, model.layer3) for block in stage]
    return ignored


def filter_pruned(dense: nn.Module, example: torch.Tensor, ratio: float) -> nn.Module:
    import torch_pruning as tp

    model = copy.deepcopy(dense)
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=_prunable_ignored(model))  # fmt: skip
    pruner.step()
    return model


def torch_pruning(setup: Setup, budgets: dict[float, int]):
    for factor, budget in budgets.items():
        low, high = 0.0, 0.9  # the smallest ratio that meets the budget
        if svdtrain.count_macs(filter_pruned(setup.dense, setup.example, high), setup.example) > budget:
            raise ValueError(f"Torch-Pruning cannot reach {factor}x here")
        for _ in range(12):
            middle = (low + high) / 2
            fits = svdtrain.count_macs(filter_pruned(setup.dense, setup.example, middle), setup.example) <= budget
            low, high = (low, middle) if fits else (middle, high)
        model = filter_pruned(setup.dense, setup.example, high)
        fit(setup, recalibrated(setup, model), setup.epochs, Regularization(), seed=2)
        yield factor, model


def methods(schemes: list[str], kinds: list[str], ablation: str) -> dict[str, Callable]:
    table: dict[str, Callable] = {}
    for scheme in schemes:
        for kind in kinds:
            table[f"svd-{scheme}-{kind}"] = lambda s, b, sc=scheme, k=kind: svd_training(
                s, sc, k, b, 1.0, SPARSITY_WEIGHTS[k])
    scheme, kind = ablation.split("-", 1)
    table[f"svd-{ablation}-no-ortho"] = lambda s, b, sc=scheme, k=kind: svd_training(
        s, sc, k, b, 0.0, SPARSITY_WEIGHTS[k])
    table[f"svd-{ablation}-no-sparsity"] = lambda s, b, sc=scheme, k=kind: svd_training(s, sc, k, b, 1.0, 0.0)
    for scheme in schemes:
        table[f"truncated-{scheme}-greedy"] = lambda s, b, sc=scheme: truncated_svd(s, sc, "greedy", b)
    table[f"truncated-{schemes[0]}-uniform"] = lambda s, b, sc=schemes[0]: truncated_svd(s, sc, "uniform", b)
    table["torch-pruning-l1"] = torch_pruning
    return table


def plot(rows: list[dict], dense: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)  # one colour per method, up to 20
    for method in dict.fromkeys(r["method"] for r in rows):
        points = sorted((r["macs"], r["accuracy"]) for r in rows if r["method"] == method)
        style = "-o" if method.startswith("svd-") and "-no-" not in method else "--s"
        ax.plot([m / 1e6 for m, _ in points], [100 * a for _, a in points], style, label=method, markersize=4)
    ax.axhline(100 * dense["accuracy"], color="k", linewidth=0.8, label=f"dense ({dense['macs'] / 1e6:.1f}M MACs)")
    ax.set_xlabel("MACs per image (millions)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs MACs at equal training epochs")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def pareto(rows: list[dict]) -> None:
    """Mark each row on the front: no other row has fewer-or-equal MACs and higher accuracy."""
    for r in rows:
        r["pareto"] = not any(o["macs"] <= r["macs"] and o["accuracy"] > r["accuracy"] for o in rows)


def build_setup(args: argparse.Namespace) -> Setup:
    torch.manual_seed(0)
    if args.quick:
        train, test = digits_arrays(0)
        name, mean, std = "digits_cnn", [0.5], [0.5]
    else:
        train, test = load_image_folder(args.data, Path("~/.cache/svdtrain").expanduser())
        name, mean, std = args.model, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    common = dict(mean=mean, std=std)
    train_batches = TensorBatches(train, 128, shuffle=True, augment=not args.quick, limit=args.train_limit or None,
                                  **common)  # fmt: skip
    test_batches = TensorBatches(test, 1000, **common)
    dense = build_model(name, len(train.classes))
    if args.checkpoint:
        load_matching(dense, read_state_dict(args.checkpoint), args.checkpoint)
    example = next(iter(test_batches))[0][:1]
    setup = Setup(name, dense, train_batches, test_batches, example, args.epochs, 1e-3)
    if args.quick:  # a dense model worth compressing
        fit(setup, dense, 3, Regularization(), seed=0)
    return setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--checkpoint", help="the pretrained (adapted) dense state dict")
    parser.add_argument("--data", help="image-folder dataset or tarball (the CIFAR-10 JPEG copy)")
    parser.add_argument("--train-limit", type=int, default=0, help="first N training images (0: all)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per method")
    parser.add_argument("--reductions", default="2,3")
    parser.add_argument("--schemes", default="channel,spatial")
    parser.add_argument("--kinds", default="hoyer,l1,hoyer_square")
    parser.add_argument("--ablation", default="channel-hoyer", help="scheme-kind run without one term each")
    parser.add_argument("--only", help="comma-separated method names to run (default: all)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.kinds = 2, "hoyer"
    elif not (args.checkpoint and args.data):
        parser.error("give --checkpoint and --data, or --quick")
    setup = build_setup(args)
    dense_macs = svdtrain.count_macs(setup.dense, setup.example)
    dense = {"accuracy": evaluate(setup.dense, setup.test), "macs": dense_macs}
    budgets = {float(f): int(dense_macs / float(f)) for f in args.reductions.split(",")}
    table = methods(args.schemes.split(","), args.kinds.split(","), args.ablation)
    chosen = args.only.split(",") if args.only else list(table)
    rows = []
    print(f"dense: accuracy {dense['accuracy']:.4f}, {dense_macs:,} MACs; {args.epochs} epochs per method")
    for method in chosen:
        started = time.perf_counter()
        for factor, model in table[method](setup, budgets):
            row = {"method": method, "reduction": factor, "macs": svdtrain.count_macs(model, setup.example),
                   "params": svdtrain.count_params(model), "accuracy": evaluate(model, setup.test),
                   "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
            rows.append(row)
            print(f"{method:<34} {factor:>4g}x  {row['macs']:>12,} MACs  accuracy {row['accuracy']:.4f}", flush=True)
            if args.json:  # partial results survive an interrupted run
                atomic_write_json(args.json, {"benchmark": "compression_quality", "date": date.today().isoformat(),
                                              "config": vars(args), "dense": dense, "rows": rows})  # fmt: skip
    pareto(rows)
    print(f"\n{'method':<34} {'target':>6} {'MACs':>12} {'accuracy':>9} {'vs dense':>9}  front")
    for r in sorted(rows, key=lambda r: (r["reduction"], -r["accuracy"])):
        print(f"{r['method']:<34} {r['reduction']:>5g}x {r['macs']:>12,} {r['accuracy']:>9.4f} "
              f"{100 * (r['accuracy'] - dense['accuracy']):>+9.2f}  {'*' if r['pareto'] else ''}")  # fmt: skip
    if args.json:
        atomic_write_json(args.json, {"benchmark": "compression_quality", "date": date.today().isoformat(),
                                      "config": vars(args), "dense": dense, "rows": rows})  # fmt: skip
    if args.plot:
        plot(rows, dense, args.plot)


if __name__ == "__main__":
    main()
