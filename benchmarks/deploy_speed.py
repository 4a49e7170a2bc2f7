"""Dense against compact where users deploy: one device, eager and compiled, fp32 and bf16.

For each model, compact models at 2x and 3x fewer MACs (random weights, greedy ranks to the
budget, in multiples of --multiple) are timed with the dense model alternately (A B C A B C ...),
each in the same mode: a fair comparison compiles both (inductor with frozen weights, as for
deployment). Reported: the ratio of medians.

  resnet50   ImageNet ResNet-50 forward, at each of --batches, its convs factored in each of
             --schemes: channel-wise (deployed k x k -> 1 x 1) or spatial-wise (k x 1 -> 1 x k),
             to see which pair form the device's conv kernels run faster
  encoder    an nn.TransformerEncoder (6 layers, width 512, 8 heads), batch 8 x 128 tokens
  prefill    Hugging Face GPT-2 124M (from its config) forward, batch --prefill-batch x 512 tokens
  decode     GPT-2 124M generate(), batch 1, --new-tokens greedy tokens: tokens/s; "compiled"
             is a static KV cache with the forward under torch.compile

GPT-2's output head is tied to its embedding: at 3x it is untied and factored (decompose(untie=...)),
which costs its own 38.6M-parameter copy; at 2x it stays tied and dense.

    python benchmarks/deploy_speed.py --json benchmarks/results/deploy_speed_cpu.json          # 2-core CPU
    python benchmarks/deploy_speed.py --device cuda --dtypes fp32,bf16 --batches 1,64 --json gpu.json
    python benchmarks/deploy_speed.py --quick                                                  # seconds
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
from torch import nn

import svdtrain
from svdtrain.models import build_model
from svdtrain.surgery.timing import interleaved_medians
from _results import write_results  # noqa: E402  (beside this script)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
HEAD = "lm_head.weight"


def compacted(dense: nn.Module, example, reduction: float, multiple: int, untie: tuple[str, ...] = (),
              scheme: str = "channel") -> nn.Module:  # fmt: skip
    """``dense`` decomposed (convs in ``scheme``), pruned to ``reduction`` x fewer MACs on
    ``example`` and compacted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what stays dense, and the untied head's cost, are in the docstring
        model = svdtrain.decompose(copy.deepcopy(dense), scheme, init="svd", untie=untie)
    svdtrain.prune(model, svdtrain.MacsBudget(example, reduction=reduction, multiple=multiple))
    return svdtrain.compact(model, example).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compile_for_inference() -> None:
    """Inductor as for deployment: weights frozen into the graph (constant-folded, prepacked for
    oneDNN on CPUs), and room in dynamo's cache for the dense and compact models' variants of the
    same modules' code (else later ones fall back to recompiling)."""
    torch._inductor.config.freezing = True
    torch._dynamo.config.cache_size_limit = 64


def forward_runner(model: nn.Module, inputs, compiled: bool):
    """A zero-argument forward of ``model`` on ``inputs`` (a tensor, or a dict of keyword inputs)."""
    run = torch.compile(model) if compiled else model
    return (lambda: run(**inputs)) if isinstance(inputs, dict) else (lambda: run(inputs))


def decode_runner(model: nn.Module, prompt: torch.Tensor, new_tokens: int, compiled: bool):
    """A zero-argument greedy generation of ``new_tokens`` tokens; compiled: a static KV cache
    and the forward under torch.compile (the setting transformers documents for fast decoding)."""
    options = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    if compiled:
        model.forward = torch.compile(model.forward)
        options["cache_implementation"] = "static"
    return lambda: model.generate(prompt, **options)


def timed(models: dict[str, nn.Module], make_runner, rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each model's runner, interleaved, after two warm-up rounds (compilation)."""
    runners = [make_runner(model) for model in models.values()]
    return dict(zip(models, interleaved_medians(runners, rounds, warmup=2, sync=lambda: _sync(device))))


def gpt2(device: torch.device, dtype: torch.dtype, quick: bool) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    size = dict(n_layer=2, n_embd=64, n_head=2, vocab_size=512, bos_token_id=0, eos_token_id=0) if quick else {}
    return GPT2LMHeadModel(GPT2Config(**size)).eval().to(device, dtype)


def encoder(width: int, layers: int) -> nn.Module:
    layer = nn.TransformerEncoderLayer(width, nhead=8 if width >= 64 else 2, dim_feedforward=4 * width,
                                       batch_first=True, dropout=0.0)  # fmt: skip
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()


def cases(args, device: torch.device, dtype: torch.dtype):
    """(name, setting, dense model, example for the MACs budget, runner maker, untied weights at 3x,
    conv scheme, unit)."""
    quick = args.quick
    if "resnet50" in args.models:
        size = 64 if quick else 224
        dense = build_model("imagenet_resnet18" if quick else "imagenet_resnet50", 1000).eval().to(device, dtype)
        for batch in args.batches:
            x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
            for scheme in args.schemes.split(","):
                setting = f"batch {batch}" + ("" if scheme == "channel" else f", {scheme}")
                yield "resnet50", setting, dense, x[:1], lambda m, c, x=x: forward_runner(m, x, c), (), scheme, "ms"
    if "encoder" in args.models:
        dense = encoder(32 if quick else 512, 2 if quick else 6).to(device, dtype)
        x = torch.randn(8, 16 if quick else 128, dense.layers[0].linear1.in_features, device=device, dtype=dtype)
        yield ("encoder", f"batch {x.shape[0]} x {x.shape[1]}", dense, x, lambda m, c: forward_runner(m, x, c), (),
               "channel", "ms")  # fmt: skip
    if "prefill" in args.models or "decode" in args.models:
        dense = gpt2(device, dtype, quick)
        length = 32 if quick else 512
        ids = torch.randint(0, dense.config.vocab_size, (args.prefill_batch, length), device=device)
        probe = {"input_ids": ids[:1]}
        if "prefill" in args.models:
            inputs = {"input_ids": ids, "use_cache": False}
            yield ("prefill", f"batch {args.prefill_batch} x {length}", dense, probe,
                   lambda m, c: forward_runner(m, inputs, c), (HEAD,), "channel", "ms")  # fmt: skip
        if "decode" in args.models:
            prompt = ids[:1, :8]
            yield ("decode", f"batch 1, {args.new_tokens} tokens", dense, probe,
                   lambda m, c: decode_runner(m, prompt, args.new_tokens, c), (HEAD,), "channel", "tokens/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="resnet50,encoder,prefill,decode")
    parser.add_argument("--dtypes", default="fp32")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--reductions", default="2,3")
    parser.add_argument("--batches", default="1,8", help="resnet50 batch sizes")
    parser.add_argument("--schemes", default="channel", help="resnet50's conv factorizations: channel, spatial")
    parser.add_argument("--prefill-batch", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--multiple", type=int, default=8, help="kept ranks are multiples of this")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.reductions, args.batches, args.rounds, args.new_tokens, args.modes = "2", "2", 1, 4, "eager"
        args.schemes = "channel,spatial"
    args.models, args.batches = args.models.split(","), [int(b) for b in str(args.batches).split(",")]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    compile_for_inference()
    device = torch.device(args.device)
    rows = []
    with torch.no_grad():
        for dtype_name in args.dtypes.split(","):
            dtype = DTYPES[dtype_name]
            for name, setting, dense, probe, make, untie_at_3x, scheme, unit in cases(args, device, dtype):
                dense_macs = svdtrain.count_macs(dense, probe)
                models = {"dense": dense}
                for reduction in (float(r) for r in args.reductions.split(",")):
                    started = time.perf_counter()
                    try:
                        models[reduction] = compacted(dense, probe, reduction, args.multiple,
                                                      untie_at_3x if reduction > 2 else (), scheme)  # fmt: skip
                    except ValueError as error:
                        print(f"{name} {setting} {dtype_name} {reduction:g}x: {error}")
                    print(f"{name} {reduction:g}x compacted in {time.perf_counter() - started:.0f} s", flush=True)
                for mode in args.modes.split(","):
                    fresh = {key: copy.deepcopy(model) for key, model in models.items()}  # compile wraps its own
                    medians = timed(fresh, lambda m: make(m, mode == "compiled"), args.rounds, device)
                    for reduction in (key for key in models if key != "dense"):
                        speedup = medians["dense"] / medians[reduction]
                        realized = dense_macs / svdtrain.count_macs(models[reduction], probe)
                        row = {"model": name, "setting": setting, "dtype": dtype_name, "mode": mode, "scheme": scheme,
                               "target": reduction, "macs_reduction": realized, "dense_s": medians["dense"],
                               "compact_s": medians[reduction], "speedup": speedup}  # fmt: skip
                        if unit == "tokens/s":
                            row["dense_tokens_per_s"] = args.new_tokens / medians["dense"]
                            row["compact_tokens_per_s"] = args.new_tokens / medians[reduction]
                        rows.append(row)
                        print(f"{name:<9} {setting:<22} {dtype_name} {mode:<8} MACs/{realized:4.2f}  dense "
                              f"{1e3 * medians['dense']:9.1f} ms  compact {1e3 * medians[reduction]:9.1f} ms  "
                              f"speedup {speedup:4.2f}", flush=True)  # fmt: skip
                    if args.json:  # after each setting: a run cut off keeps what it measured
                        write_results(args.json, "deploy_speed", {"device": str(device), "rounds": args.rounds,
                                                                  "multiple": args.multiple, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
