"""Training-step cost of the full-rank SVD form against the dense model, side by side.

Variants, timed A B C A B C ... in one process so machine noise hits all alike:
  dense     the plain model: forward, backward, Adam step
  svd       decomposed (channel, SVD init) + orthogonality + Hoyer terms; each layer picks
            its cheaper path per call (at full rank: rebuild W once, one conv)
  svd_pair  the same, but forced through the two thin convs every step (what naive
            implementations do), to show why the per-layer choice matters
Reports median seconds per step and the ratio of medians to dense.

    python benchmarks/train_step_overhead.py            # ResNet-20, batch 128, 20 rounds
    python benchmarks/train_step_overhead.py --quick    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from datetime import date

import torch
import torch.nn.functional as F

import svdtrain
from svdtrain.models import cifar_resnet
from svdtrain.io import atomic_write_json


def make_step(model, regularize: bool, batch: torch.Tensor, targets: torch.Tensor):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = F.cross_entropy(model(batch), targets)
        if regularize:
            loss = loss + svdtrain.orthogonality_loss(model) + 1e-3 * svdtrain.sparsity_loss(model, "hoyer")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def force_pair_path(model) -> None:
    for _, layer in svdtrain.svd_layers(model):
        layer.forward = layer.forward_factored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.quick:
        args.batch_size, args.rounds, args.warmup = 4, 2, 1

    torch.manual_seed(0)
    dense = cifar_resnet(args.depth)
    svd = svdtrain.decompose(copy.deepcopy(dense), scheme="channel", init="svd")
    pair = copy.deepcopy(svd)
    force_pair_path(pair)
    batch = torch.randn(args.batch_size, 3, 32, 32)
    targets = torch.randint(0, 10, (args.batch_size,))
    steps = {
        "dense": make_step(dense, False, batch, targets),
        "svd": make_step(svd, True, batch, targets),
        "svd_pair": make_step(pair, True, batch, targets),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(args.warmup + args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if round_index >= args.warmup:
                times[name].append(time.perf_counter() - start)

    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "benchmark": "train_step_overhead",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "model": f"cifar_resnet{args.depth}",
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "median_seconds": medians,
        "ratio_to_dense": {name: medians[name] / medians["dense"] for name in medians},
    }
    print(f"{'variant':<10} {'median s/step':>14} {'ratio':>7}")
    for name in steps:
        print(f"{name:<10} {medians[name]:>14.4f} {result['ratio_to_dense'][name]:>7.3f}")
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
