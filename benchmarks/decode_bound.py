"""What bounds GPT-2 decoding speed: the weights' products against everything else, per token.

Decoding at batch 1 reads every weight once per token, so a compact model with half the
weight bytes could decode up to twice as fast, if the products were all the time. This splits
each model's time per greedy token (torch eager, the dense model and its compact copies at
2x / 3x fewer MACs from benchmarks/deploy_speed.py) into:

  products   self time of aten::addmm / aten::mm (every Linear, Conv1D and pair half)
  rest       everything else: attention, norms, the KV cache, sampling, Python and dispatch

The split is read from torch.profiler over one generation; the per-token total is timed
without the profiler (interleaved medians), and the split's shares are applied to it. The
bound is what the compact model would gain if its "rest" cost what the dense model's does and
only the products shrank, and what it would gain with no "rest" at all.

    python benchmarks/decode_bound.py --json benchmarks/results/decode_bound_cpu.json
    python benchmarks/decode_bound.py --quick
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import svdtrain
from svdtrain.surgery.timing import interleaved_medians
from _results import write_results  # noqa: E402  (beside this script)
from deploy_speed import DTYPES, HEAD, compacted, decode_runner, gpt2  # noqa: E402

PRODUCTS = ("aten::addmm", "aten::mm")


def product_share(run) -> float:
    """The share of one ``run()``'s profiled CPU time spent in the weights' products."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = prof.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    return sum(event.self_cpu_time_total for event in events if event.key in PRODUCTS) / total


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights a token's products read: every 2-D parameter but the embeddings
    looked up by index (the tied output head reads the token embedding whole, once)."""
    lookups = {id(model.transformer.wpe.weight)}
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.dim() == 2 and id(p) not in lookups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--reductions", default="2,3")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--multiple", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.reductions, args.new_tokens, args.rounds = "2", 4, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense = gpt2(torch.device("cpu"), DTYPES[args.dtype], args.quick)
    prompt = torch.randint(0, dense.config.vocab_size, (1, 8))
    models = {"dense": dense}
    for reduction in (float(r) for r in args.reductions.split(",")):
        models[f"{reduction:g}x"] = compacted(dense, {"input_ids": prompt}, reduction, args.multiple,
                                               (HEAD,) if reduction > 2 else ())  # fmt: skip
    rows = []
    with torch.no_grad():
        runners = {name: decode_runner(model, prompt, args.new_tokens, compiled=False) for name, model in models.items()}
        seconds = dict(zip(runners, interleaved_medians(list(runners.values()), args.rounds)))
        for name, run in runners.items():
            per_token = seconds[name] / args.new_tokens
            share = product_share(run)
            rows.append({"model": name, "ms_per_token": 1e3 * per_token, "products_ms": 1e3 * per_token * share,
                         "rest_ms": 1e3 * per_token * (1 - share), "weight_mb": weight_bytes(models[name]) / 2**20})  # fmt: skip
    dense_row = rows[0]
    for row in rows:
        row["speedup"] = dense_row["ms_per_token"] / row["ms_per_token"]
        row["bound_dense_rest"] = dense_row["ms_per_token"] / (row["products_ms"] + dense_row["rest_ms"])
        row["bound_no_rest"] = dense_row["ms_per_token"] / row["products_ms"]
        print(f"{row['model']:<6} {row['ms_per_token']:6.2f} ms/token = products {row['products_ms']:6.2f} + rest "
              f"{row['rest_ms']:5.2f}   weights {row['weight_mb']:6.1f} MB   speedup {row['speedup']:4.2f}   "
              f"bound with dense's rest {row['bound_dense_rest']:4.2f}, with none {row['bound_no_rest']:4.2f}")  # fmt: skip
    if args.json:
        write_results(args.json, "decode_bound", {"dtype": args.dtype, "new_tokens": args.new_tokens,
                                                  "rounds": args.rounds, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
