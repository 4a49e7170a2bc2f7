"""Realized inference speedup of compact models against their dense originals.

For each model, scheme and MACs reduction, builds compact models (random weights, greedy
ranks to the budget) in up to three export variants and times them with the dense model
alternately (A B C D A B C D ...) in each runtime; reports the ratio of median latencies
and speedup / MACs reduction (1.0 = all of the MACs saving shows up as time):
  compact   any rank, each layer's form (pair or dense) chosen by MACs (the first export)
  rounded   ranks in multiples of --multiple (MacsBudget(multiple=...))
  measured  rounded, and each layer kept dense where its pair measures slower here in
            torch eager at this batch size (compact(choose="measured"))
  speed     ranks chosen for a measured speedup equal to the MACs target instead of a
            MACs budget (Speedup at this batch size), compact(choose="measured")
In eager mode every model, dense included, has its BatchNorm folded into the preceding
conv (torch.fx fuse); ONNX Runtime folds Conv+BatchNorm itself.

    python benchmarks/inference_speed.py                      # CIFAR ResNet-20/56, eager + ONNX Runtime
    python benchmarks/inference_speed.py --models imagenet_resnet50 --batches 1,8 --reductions 2,3
    python benchmarks/inference_speed.py --runtimes eager,compile,onnxruntime
    python benchmarks/inference_speed.py --quick
"""

from __future__ import annotations

import argparse
import copy
import io
import warnings

import torch
from torch.fx.experimental.optimization import fuse

import svdtrain
from svdtrain.models import build_model
from svdtrain.surgery.timing import interleaved_medians
from _results import write_results  # noqa: E402  (beside this script)


VARIANTS = ("compact", "rounded", "measured", "speed")


def _input_size(model_name: str) -> int:
    return 224 if model_name.startswith("imagenet") else 32


def pruned_at(dense: torch.nn.Module, probe: torch.Tensor, scheme: str, reduction: float, multiple: int):
    model = svdtrain.decompose(copy.deepcopy(dense), scheme=scheme, init="svd")
    budget = int(svdtrain.count_macs(dense, probe) / reduction)
    svdtrain.prune(model, svdtrain.MacsBudget(probe, max_macs=budget, multiple=multiple))
    return model.eval()


def runner(model: torch.nn.Module, runtime: str, example: torch.Tensor, threads: int):
    """A zero-argument callable running one forward pass in ``runtime``."""
    if runtime == "eager":
        folded = fuse(model)  # BatchNorm folded into the conv before it, as ONNX Runtime does
        return lambda: folded(example)
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
    # Idle sessions must not spin their threads: interleaved A B A B timing would charge one
    # model's spinning to the next one's run.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"input": example.numpy()}
    return lambda: session.run(None, feed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--schemes", default="channel,spatial")
    parser.add_argument("--reductions", default="1.5,2,3,4")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--runtimes", default="eager,onnxruntime")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--multiple", type=int, default=8, help="rank multiple of the rounded variants")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.models, args.schemes, args.reductions, args.batches, args.rounds = "resnet20", "channel", "2", "1", 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = args.variants.split(",")
    rows = []
    with torch.no_grad():
        for model_name in args.models.split(","):
            dense = build_model(model_name, 10).eval()
            size = _input_size(model_name)
            probe = torch.randn(1, 3, size, size)
            dense_macs = svdtrain.count_macs(dense, probe)
            for scheme in args.schemes.split(","):
                for reduction in (float(r) for r in args.reductions.split(",")):
                    pruned = {1: pruned_at(dense, probe, scheme, reduction, 1)}
                    if any(v in ("rounded", "measured") for v in variants):
                        try:
                            pruned[args.multiple] = pruned_at(dense, probe, scheme, reduction, args.multiple)
                        except ValueError as error:  # e.g. rank 8 of a 16-channel layer is already too much
                            print(f"{model_name} {scheme} rounded {reduction:g}x: {error}")
                    for batch in (int(b) for b in args.batches.split(",")):
                        example = torch.randn(batch, 3, size, size)
                        models = {"dense": dense}
                        for variant in variants:
                            if variant == "speed":
                                source = svdtrain.decompose(copy.deepcopy(dense), scheme=scheme, init="svd")
                                try:
                                    ranks = svdtrain.Speedup(reduction, example, multiple=args.multiple).ranks(source)
                                except ValueError as error:
                                    print(f"{model_name} {scheme} speed {reduction:g}x batch {batch}: {error}")
                                    continue
                                svdtrain.prune(source, svdtrain.Ranks(ranks))
                            elif variant == "compact" or args.multiple in pruned:
                                source = pruned[1 if variant == "compact" else args.multiple]
                            else:
                                continue
                            choose = "macs" if variant in ("compact", "rounded") else "measured"
                            models[variant] = svdtrain.compact(source, example, choose=choose).eval()
                        for runtime in args.runtimes.split(","):
                            runners = [runner(m, runtime, example, args.threads) for m in models.values()]
                            medians = dict(zip(models, interleaved_medians(runners, args.rounds, warmup=2)))
                            for variant in (v for v in variants if v in models):
                                realized = dense_macs / svdtrain.count_macs(models[variant], probe)
                                speedup = medians["dense"] / medians[variant]
                                rows.append({"model": model_name, "scheme": scheme, "target": reduction,
                                             "variant": variant, "macs_reduction": realized, "batch": batch,
                                             "runtime": runtime, "dense_ms": 1e3 * medians["dense"],
                                             "compact_ms": 1e3 * medians[variant], "speedup": speedup,
                                             "speedup_per_macs_reduction": speedup / realized})  # fmt: skip
                                print(f"{model_name:<18} {scheme:<8} {variant:<9} MACs/{realized:4.2f} batch {batch:<3} "
                                      f"{runtime:<12} dense {1e3 * medians['dense']:8.2f} ms  "
                                      f"compact {1e3 * medians[variant]:8.2f} ms  speedup {speedup:4.2f}  "
                                      f"ratio {speedup / realized:4.2f}", flush=True)  # fmt: skip
    if args.json:
        write_results(args.json, "inference_speed", {
            "rounds": args.rounds, "rows": rows,
        })  # fmt: skip


if __name__ == "__main__":
    main()
