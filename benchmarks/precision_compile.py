"""bf16 autocast and torch.compile against the float32 eager training step of the SVD form
(issue 11), and what each does to accuracy after a short run.

Step time: ResNet-20 decomposed channel-wise (full rank, SVD init), one training step of
train_epoch (orthogonality + Hoyer terms, fused Adam; compiled: forward, loss and
regularizers as one graph, StepLoss, as --compile true runs it) at batch 128 on random 32x32 images; the
variants are timed interleaved (A B C D A B ...) in one process, medians of --rounds rounds of
--block steps each, after the compiled variants have compiled. Accuracy: the smoke preset
(digits, seconds) run end to end with each setting.

    python benchmarks/precision_compile.py
    python benchmarks/precision_compile.py --quick     # eager variants at batch 4, for the test suite
                                                       # (compiling takes minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch

import svdtrain
from svdtrain.cli import main as svdtrain_main
from svdtrain.models import build_model
from svdtrain.surgery.timing import interleaved_medians
from svdtrain.train import Regularization, StepLoss, train_epoch
from _results import write_results  # noqa: E402  (beside this script)

VARIANTS = {"fp32 eager": ("fp32", False), "bf16 eager": ("bf16", False), "fp32 compiled": ("fp32", True),
            "bf16 compiled": ("bf16", True)}  # fmt: skip


def step_times(model_name: str, batch_size: int, rounds: int, block: int, variants: dict) -> dict[str, float]:
    torch.manual_seed(0)
    base = svdtrain.decompose(build_model(model_name, 10), scheme="channel")
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    regularization = Regularization(1.0, 1e-3, "hoyer")
    runs = []
    for precision, compiled in variants.values():
        model = copy.deepcopy(base)
        step = StepLoss(model, regularization, precision=precision, compile="default" if compiled else None)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the pipeline builds it

        def run(model=model, optimizer=optimizer, step=step):
            train_epoch(model, [(x, y)] * block, optimizer, regularization, step_loss=step)

        run()  # compiles (the compiled variants) before any timing
        runs.append(run)
    medians = interleaved_medians(runs, rounds, 1)
    return {name: seconds / block for name, seconds in zip(variants, medians)}


def short_run_accuracy(quick: bool, variants: dict) -> dict[str, float]:
    extra = ["--train-limit", "200", "--test-limit", "100", "--start-epochs", "1", "--svd-epochs", "1",
             "--finetune-epochs", "1"] if quick else []  # fmt: skip
    result = {}
    for name, (precision, compiled) in variants.items():
        out = Path(tempfile.mkdtemp()) / "run"
        args = ["run", "--preset", "smoke", "--out", str(out), "--precision", precision, "--compile", str(compiled)]
        assert svdtrain_main([*args, *extra]) == 0
        result[name] = json.loads((out / "report.json").read_text())["compact"]["accuracy"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=3, help="steps per timed block")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    variants = VARIANTS
    if args.quick:
        args.model, args.batch_size, args.rounds, args.block = "resnet20", 4, 2, 1
        variants = {name: v for name, v in VARIANTS.items() if not v[1]}
    times = step_times(args.model, args.batch_size, args.rounds, args.block, variants)
    accuracy = short_run_accuracy(args.quick, variants)
    print(f"{'variant':<14} {'s/step':>8} {'vs fp32 eager':>14} {'smoke accuracy':>15}")
    for name in variants:
        print(f"{name:<14} {times[name]:>8.4f} {times[name] / times['fp32 eager']:>13.2f}x {accuracy[name]:>15.4f}")
    if args.json:
        write_results(args.json, "precision_compile", {
            "model": args.model, "batch_size": args.batch_size, "seconds_per_step": times,
            "ratio_to_fp32_eager": {k: v / times["fp32 eager"] for k, v in times.items()},
            "smoke_accuracy": accuracy,
        })  # fmt: skip


if __name__ == "__main__":
    main()
