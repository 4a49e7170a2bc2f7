"""Realized inference speedup of compact models against their dense originals.

For each model, scheme and MACs reduction, builds a compact model (random weights, greedy
ranks to the budget) and times dense and compact alternately (A B A B ...) in each runtime;
reports the ratio of median latencies and speedup / MACs reduction (1.0 = all of the
MACs saving shows up as time).

    python benchmarks/inference_speed.py                      # CIFAR ResNet-20/56, eager + ONNX Runtime
    python benchmarks/inference_speed.py --models imagenet_resnet50 --batches 1,8
    python benchmarks/inference_speed.py --runtimes eager,compile,onnxruntime
    python benchmarks/inference_speed.py --quick
"""

from __future__ import annotations

import argparse
import copy
import io
import platform
import statistics
import time
import warnings
from datetime import date

import torch

import svdtrain
from svdtrain.io import atomic_write_json
from svdtrain.models import build_model


def _input_size(model_name: str) -> int:
    return 224 if model_name.startswith("imagenet") else 32


def compact_at(dense: torch.nn.Module, example: torch.Tensor, scheme: str, reduction: float) -> torch.nn.Module:
    model = svdtrain.decompose(copy.deepcopy(dense), scheme=scheme, init="svd")
    budget = int(svdtrain.count_macs(dense, example) / reduction)
    svdtrain.prune(model, rank=svdtrain.ranks_for_macs(model, example, budget))
    return svdtrain.compact(model, example).eval()


def runner(model: torch.nn.Module, runtime: str, example: torch.Tensor, threads: int):
    """A zero-argument callable running one forward pass in ``runtime``."""
    if runtime == "eager":
        return lambda: model(example)
    if runtime == "compile":
        compiled = torch.compile(model)
        return lambda: compiled(example)
    import onnxruntime

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=["input"], output_names=["output"])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"input": example.numpy()}
    return lambda: session.run(None, feed)


def interleaved_medians(first, second, rounds: int, warmup: int) -> tuple[float, float]:
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(warmup + rounds):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            if index >= warmup:
                bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--schemes", default="channel,spatial")
    parser.add_argument("--reductions", default="1.5,2,3,4")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--runtimes", default="eager,onnxruntime")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.models, args.schemes, args.reductions, args.batches, args.rounds = "resnet20", "channel", "2", "1", 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for model_name in args.models.split(","):
            dense = build_model(model_name, 10).eval()
            size = _input_size(model_name)
            probe = torch.randn(1, 3, size, size)
            dense_macs = svdtrain.count_macs(dense, probe)
            for scheme in args.schemes.split(","):
                for reduction in (float(r) for r in args.reductions.split(",")):
                    small = compact_at(dense, probe, scheme, reduction)
                    realized = dense_macs / svdtrain.count_macs(small, probe)
                    for batch in (int(b) for b in args.batches.split(",")):
                        example = torch.randn(batch, 3, size, size)
                        for runtime in args.runtimes.split(","):
                            a = runner(dense, runtime, example, args.threads)
                            b = runner(small, runtime, example, args.threads)
                            dense_s, compact_s = interleaved_medians(a, b, args.rounds, warmup=2)
                            speedup = dense_s / compact_s
                            rows.append({"model": model_name, "scheme": scheme, "macs_reduction": realized,
                                         "batch": batch, "runtime": runtime, "dense_ms": 1e3 * dense_s,
                                         "compact_ms": 1e3 * compact_s, "speedup": speedup,
                                         "speedup_per_macs_reduction": speedup / realized})  # fmt: skip
                            r = rows[-1]
                            print(f"{model_name:<18} {scheme:<8} MACs/{realized:4.2f} batch {batch:<3} {runtime:<12} "
                                  f"dense {r['dense_ms']:8.2f} ms  compact {r['compact_ms']:8.2f} ms  "
                                  f"speedup {speedup:4.2f}  ratio {r['speedup_per_macs_reduction']:4.2f}", flush=True)  # fmt: skip
    if args.json:
        atomic_write_json(args.json, {
            "benchmark": "inference_speed", "date": date.today().isoformat(),
            "machine": f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}",
            "rounds": args.rounds, "rows": rows,
        })  # fmt: skip


if __name__ == "__main__":
    main()
