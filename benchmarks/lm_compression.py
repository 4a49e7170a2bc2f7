"""Language models on tiny-Shakespeare: SVD training (Hoyer, L1) against truncated SVD +
fine-tuning, same starting model, same total epochs, same MACs target.

For each model one dense model is trained from scratch (the presets' start stage) and shared;
each method then starts from it:
  hoyer, l1   the preset: SVD-train (orthogonality + sparsity), prune to the MACs target,
              fine-tune with distillation from the dense model
  truncated   no SVD training: prune the dense model's SVD to the same target, then fine-tune
              for the SVD-training and fine-tuning epochs together (same distillation);
              truncated-whiten cuts activation-aware
  all         the hoyer preset with the levers of svd_vs_truncation.py (gradual cuts, MACs-weighted
              sparsity, 10x lr on s, distillation during SVD training, activation-aware cuts);
              any of its other lever names works too
Validation loss and bits per character of each compact model (its exported TorchScript), its
parameters and MACs per token, and tokens per second of the compact model against the dense one
at a batch of 16 sequences (torch eager and ONNX Runtime, interleaved medians). Runs resume:
an interrupted benchmark continues where it stopped when started again with the same --out.

    python benchmarks/lm_compression.py --out runs/lm_compression            # about an hour on 2 cores
    python benchmarks/lm_compression.py --models gpt --reductions gpt=2,3
    python benchmarks/lm_compression.py --models lstm --seed 1 --no-speed --out runs/lm_seed1   # a second seed
    python benchmarks/lm_compression.py --quick                              # seconds, for the test suite

``--seed`` changes every random choice (the dense model's initialization included); ``--no-speed``
skips the timing, so a seed run can share the machine without skewing any number it reports.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from functools import partial
from pathlib import Path

import torch

import svdtrain
from svdtrain.surgery.timing import interleaved_medians
from svdtrain.pipeline.config import resolve_config
from svdtrain.export import load_compact

from _pipeline_runs import run_preset  # noqa: E402  (beside this script)
from sequence_models import onnx_runner  # noqa: E402
from svd_vs_truncation import LEVERS, TRUNCATION  # noqa: E402
from _results import write_results  # noqa: E402  (beside this script)

# model -> method -> (preset, overrides); "truncated" uses the hoyer preset without SVD training.
PRESETS = {
    "gpt": {"hoyer": ("cpu-gpt-hoyer", {}), "l1": ("cpu-gpt-l1", {})},
    "lstm": {"hoyer": ("cpu-char-lstm-hoyer", {}), "l1": ("cpu-char-lstm-l1", {})},
    "quick": {"hoyer": ("smoke-lm", {}), "l1": ("smoke-lm", {"sparsity_kind": "l1", "sparsity_weight": 1e-4})},
}
REDUCTIONS = {"gpt": [2.0, 3.0], "lstm": [1.3, 1.6], "quick": [1.2]}
# hoyer / l1: the presets; truncated, truncated-whiten, truncated-scale: no SVD training, as in
# svd_vs_truncation.py; any other of its lever names: the hoyer preset with those levers ("all").
METHODS = ("hoyer", "l1", *TRUNCATION, *(name for name in LEVERS if name != "paper"))


def method_config(model: str, method: str, dense_checkpoint: Path, reduction: float) -> tuple[str, dict]:
    """The preset and overrides of one method at one MACs target, from the shared dense model."""
    preset, overrides = PRESETS[model][method if method in ("hoyer", "l1") else "hoyer"]
    overrides = {**overrides, "checkpoint": str(dense_checkpoint), "start_epochs": 0, "target_reduction": reduction}
    overrides["recipe"] = "paper"  # the default, named so each run's config says it
    if method in TRUNCATION:
        config = resolve_config(preset)
        overrides.update(svd_epochs=0, finetune_epochs=config.svd_train.epochs + config.finetune.epochs)
        overrides.update(TRUNCATION[method])
    elif method in LEVERS:
        overrides.update(LEVERS[method])
    return preset, overrides


def tokens_per_second(dense: torch.nn.Module, small: torch.nn.Module, example: torch.Tensor, rounds: int) -> dict:
    dense, small = dense.eval(), small.eval()
    tokens = example.numel()
    result = {}
    for runtime in ("eager", "onnxrt"):
        with torch.no_grad():
            calls = [partial(m, example) if runtime == "eager" else onnx_runner(m, example) for m in (dense, small)]
            dense_s, small_s = interleaved_medians(calls, rounds, 2)
        result[runtime] = {"dense": tokens / dense_s, "compact": tokens / small_s, "speedup": dense_s / small_s}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gpt,lstm")
    parser.add_argument("--methods", default="hoyer,l1,truncated", help=f"of {', '.join(METHODS)}")
    parser.add_argument("--reductions", default="", help="per model, e.g. gpt=2,3;lstm=1.3,1.6")
    parser.add_argument("--out", default="runs/lm_compression")
    parser.add_argument("--rounds", type=int, default=10, help="timing rounds")
    parser.add_argument("--quick", action="store_true", help="the smoke preset, for the test suite")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run, the dense model's included")
    parser.add_argument("--no-speed", action="store_true", help="skip the tokens-per-second measurement")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    models = ["quick"] if args.quick else args.models.split(",")
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(METHODS)}")
    reductions = dict(REDUCTIONS)
    for part in filter(None, args.reductions.split(";")):
        model, values = part.split("=")
        reductions[model] = [float(v) for v in values.split(",")]
    out = Path(tempfile.mkdtemp()) if args.quick else Path(args.out)
    if args.quick:  # a small text of its own, so the quick mode needs no data folder
        text = out / "quick.txt"
        text.write_text("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 60)
        for methods in PRESETS["quick"].values():
            methods[1]["data"] = str(text)
    for methods in PRESETS.values():
        for _, overrides in methods.values():
            overrides["seed"] = args.seed
    rows = []
    print(f"{'model':<6} {'method':<16} {'target':>6} {'val loss':>8} {'bpc':>6} {'vs dense':>8} {'params':>9} "
          f"{'MACs/token':>10} {'MACs cut':>8} {'tok/s eager':>11} {'x':>5} {'tok/s ORT':>10} {'x':>5}")  # fmt: skip
    for model in models:
        dense_dir = out / model / "dense"
        dense_preset, dense_overrides = PRESETS[model]["hoyer"]
        dense_run = run_preset(dense_preset, dense_dir, dict(dense_overrides), stages=("start",), quiet=args.quick)
        dense_record = torch.load(dense_dir / "start.pt", map_location="cpu", weights_only=True)
        baseline = dense_record["baseline"]
        length = dense_run.config.data.block_length
        example = dense_run.data.example.cpu().expand(16, length).contiguous()
        dense_model, _ = dense_run.load_stage("start")
        dense_model = svdtrain.compact(dense_model.cpu(), example)  # dense layers again
        rows.append({"model": model, "method": "dense", "loss": baseline["loss"],
                     "bits_per_token": baseline["bits_per_token"], "params": baseline["params"],
                     "macs_per_token": baseline["macs"] / length})  # fmt: skip
        for method in args.methods.split(","):
            for reduction in reductions[model]:
                preset, overrides = method_config(model, method, dense_dir / "adapted_dense.pt", reduction)
                run_dir = out / model / f"{method}-{reduction:g}x"
                run_preset(preset, run_dir, overrides, quiet=args.quick)
                report = json.loads((run_dir / "report.json").read_text())
                small = load_compact(run_dir / "export")
                speed = None if args.no_speed else tokens_per_second(dense_model, small, example,
                                                                      2 if args.quick else args.rounds)
                compact = report["compact"]
                row = {"model": model, "method": method, "target_reduction": reduction, "loss": compact["loss"],
                       "bits_per_token": compact["bits_per_token"], "loss_increase": compact["loss"] / baseline["loss"] - 1,
                       "params": compact["params"], "macs_per_token": compact["macs"] / length,
                       "macs_reduction": report["macs_reduction"], "params_reduction": report["params_reduction"],
                       "tokens_per_second": speed, "run": str(run_dir)}  # fmt: skip
                rows.append(row)
                timing = "" if speed is None else (
                    f" {speed['eager']['compact']:>11,.0f} {speed['eager']['speedup']:>5.2f} "
                    f"{speed['onnxrt']['compact']:>10,.0f} {speed['onnxrt']['speedup']:>5.2f}")  # fmt: skip
                print(f"{model:<6} {method:<16} {reduction:>5g}x {row['loss']:>8.4f} {row['bits_per_token']:>6.3f} "
                      f"{100 * row['loss_increase']:>+7.2f}% {row['params']:>9,} {row['macs_per_token']:>10,.0f} "
                      f"{row['macs_reduction']:>7.2f}x{timing}", flush=True)  # fmt: skip
    best = {}
    for row in rows:
        if row["method"] != "dense" and row["loss_increase"] <= 0.05:
            key = f"{row['model']} {row['method']}"
            best[key] = max(best.get(key, 1.0), row["macs_reduction"])
    print("largest MACs reduction within 5% of the dense validation loss:", best or "none")
    if args.json:
        write_results(args.json, "lm_compression", {
            "seed": args.seed, "rows": rows, "largest_within_5_percent": best,
        })  # fmt: skip


if __name__ == "__main__":
    main()
