"""What subnormal weights cost a CPU training step, and what flushing them to zero saves
(``run: flush_denormals``, on by default in the pipeline).

Fine-tuning a truncated ResNet-20 (BENCHMARKS.md section 3.4) drove a few hundred entries of
layer3's Vh factors below float32's smallest normal number (1.2e-38) while its epochs slowed
from 110 s to 278 s. Here such entries are made on purpose: ResNet-20 decomposed channel-wise
(SVD init), ``--fraction`` of the entries of every layer3 Vh set to 1e-39, one training step
(orthogonality + Hoyer, Adam) at batch 128 timed against the same model without subnormal
entries, interleaved; once in a process that keeps subnormals and once in one that flushes them
(the flag is per thread: each process sets it before its worker threads exist).

    python benchmarks/subnormal_weights.py --json benchmarks/results/subnormal_weights.json
    python benchmarks/subnormal_weights.py --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys

import torch

import svdtrain
from svdtrain.models import build_model
from svdtrain.surgery.timing import interleaved_medians
from svdtrain.train import Regularization, train_epoch
from _results import write_results  # noqa: E402  (beside this script)


def with_subnormals(model: torch.nn.Module, fraction: float) -> torch.nn.Module:
    """A copy with ``fraction`` of every layer3 Vh entry set to 1e-39 (a fixed random choice)."""
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("layer3") and name.endswith("original2"):  # Vh of the SVD form
                chosen = torch.rand(parameter.shape, generator=generator) < fraction
                parameter[chosen] = 1e-39
    return model


def step_times(batch_size: int, fraction: float, rounds: int) -> dict[str, float]:
    """Median seconds of a step without and with subnormal weights, interleaved, in this process."""
    torch.manual_seed(0)
    clean = svdtrain.decompose(build_model("resnet20", 10), scheme="channel")
    dirty = with_subnormals(clean, fraction)
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    regularization = Regularization(1.0, 1e-3, "hoyer")
    calls = []
    for model in (clean, dirty):
        optimizer = torch.optim.Adam(model.parameters(), lr=0.0)  # lr 0: the weights stay as made
        calls.append(lambda model=model, optimizer=optimizer: train_epoch(model, [(x, y)], optimizer, regularization))
    clean_s, dirty_s = interleaved_medians(calls, rounds, 1)
    return {"clean": clean_s, "subnormal": dirty_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--fraction", type=float, default=0.03, help="of each layer3 Vh's entries made subnormal")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--child-flush", choices=("0", "1"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch_size, args.rounds = 4, 2
    if args.child_flush is not None:  # a fresh process: the flag set before any thread exists
        torch.set_flush_denormal(args.child_flush == "1")
        print(json.dumps(step_times(args.batch_size, args.fraction, args.rounds)))
        return
    # FTZ/DAZ is a per-thread CPU flag that worker threads copy when they are created, so each
    # setting runs in a process of its own that sets it first (as the pipeline does)
    results = {}
    for flush in ("0", "1"):
        command = [sys.executable, __file__, "--child-flush", flush, "--batch-size", str(args.batch_size),
                   "--fraction", str(args.fraction), "--rounds", str(args.rounds)]  # fmt: skip
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results["flushed" if flush == "1" else "kept"] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'subnormals':<11} {'clean s/step':>13} {'subnormal s/step':>17} {'ratio':>6}")
    for name, r in results.items():
        print(f"{name:<11} {r['clean']:>13.4f} {r['subnormal']:>17.4f} {r['subnormal'] / r['clean']:>6.2f}")
    if args.json:
        write_results(args.json, "subnormal_weights", {
            "batch_size": args.batch_size, "fraction": args.fraction, "seconds_per_step": results,
            "ratio_subnormal_to_clean": {k: r["subnormal"] / r["clean"] for k, r in results.items()},
        })  # fmt: skip


if __name__ == "__main__":
    main()
