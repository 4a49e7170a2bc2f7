"""What bounds GPT-2 decoding speed: the weights' products against everything else, per token.

Decoding at batch 1 reads every weight once per token, so a compact model with half the
weight bytes could decode up to twice as fast, if the products were all the time. This splits
each model's time per greedy token (torch eager, the dense model and its compact copies at
2x / 3x fewer MACs from benchmarks/deploy_speed.py) into:

  head      the output head's product (tied, dense at 2x; factored at 3x)
  products  the other weights' products (self time of aten::addmm / aten::mm: every Conv1D and
            pair half), with their calls per token and the weight bytes they read per second
  rest      everything else: attention, norms, the KV cache, sampling, Python and dispatch

The split is read from torch.profiler over one generation; the per-token total is timed
without the profiler (interleaved medians), and the split's shares are applied to it. Bounds:
the speedup if the compact model's rest cost the dense model's; with no rest at all; and if its
other products read their weights as fast (GB/s) as the dense model's do.

    python benchmarks/decode_bound.py --json benchmarks/results/decode_bound_cpu.json
    python benchmarks/decode_bound.py --reductions 2 --untie-head   # the head factored at 2x too
    python benchmarks/decode_bound.py --quick
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from svdtrain.surgery.timing import interleaved_medians
from _results import write_results  # noqa: E402  (beside this script)
from deploy_speed import DTYPES, HEAD, compacted, decode_runner, gpt2  # noqa: E402

PRODUCTS = ("aten::addmm", "aten::mm")


def profiled_split(run, vocab_size: int) -> dict[str, float]:
    """One ``run()`` under torch.profiler: the shares of its CPU time in the output head's
    product and in the other weights' products, those products' calls, and the bytes of
    weight they read (each call reads its whole weight)."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(event.self_cpu_time_total for event in events)
    split = {"head": 0.0, "body": 0.0, "body_calls": 0, "body_bytes": 0, "head_bytes": 0}
    for event in (e for e in events if e.key in PRODUCTS):
        weight = event.input_shapes[2 if event.key == "aten::addmm" else 1]
        part = "head" if vocab_size in weight else "body"
        split[part] += event.self_cpu_time_total / total
        split[f"{part}_bytes"] += event.count * weight[0] * weight[1]
        if part == "body":
            split["body_calls"] += event.count
    return split


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights a token's products read: every 2-D parameter but the embeddings,
    looked up by index (a head tied to the token embedding reads it whole, so it counts)."""
    wte = model.transformer.wte.weight
    tied = getattr(model.lm_head, "weight", None) is wte
    lookups = {id(model.transformer.wpe.weight)} | (set() if tied else {id(wte)})
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.dim() == 2 and id(p) not in lookups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--reductions", default="2,3")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--multiple", type=int, default=8)
    parser.add_argument("--untie-head", action="store_true", help="factor the output head at 2x too (default: "
                        "tied and dense at 2x, untied above)")  # fmt: skip
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
                                               (HEAD,) if reduction > 2 or args.untie_head else ())  # fmt: skip
    rows = []
    size = torch.finfo(DTYPES[args.dtype]).bits // 8
    calls = args.new_tokens  # forwards per generation: the prompt's (giving the first token), then one per token
    with torch.no_grad():
        runners = {name: decode_runner(model, prompt, args.new_tokens, compiled=False)
                   for name, model in models.items()}  # fmt: skip
        seconds = dict(zip(runners, interleaved_medians(list(runners.values()), args.rounds)))
        for name, run in runners.items():
            per_token = 1e3 * seconds[name] / args.new_tokens
            split = profiled_split(run, dense.config.vocab_size)
            head, body = per_token * split["head"], per_token * split["body"]
            rows.append({"model": name, "ms_per_token": per_token, "head_ms": head, "body_ms": body,
                         "rest_ms": per_token - head - body, "body_calls_per_token": split["body_calls"] / calls,
                         "body_mb_per_token": split["body_bytes"] * size / calls / 1e6,
                         "body_gb_per_s": split["body_bytes"] * size / calls / body / 1e6,
                         "head_gb_per_s": split["head_bytes"] * size / calls / head / 1e6 if head else None,
                         "weight_mb": weight_bytes(models[name]) / 1e6})  # fmt: skip
    dense_row = rows[0]
    for row in rows:
        row["speedup"] = dense_row["ms_per_token"] / row["ms_per_token"]
        products = row["head_ms"] + row["body_ms"]
        row["bound_dense_rest"] = dense_row["ms_per_token"] / (products + dense_row["rest_ms"])
        row["bound_no_rest"] = dense_row["ms_per_token"] / products
        at_dense_rate = row["body_mb_per_token"] / dense_row["body_gb_per_s"]  # ms, as the dense body reads
        row["bound_products_at_dense_rate"] = dense_row["ms_per_token"] / (
            row["head_ms"] + at_dense_rate + row["rest_ms"])  # fmt: skip
        print(f"{row['model']:<6} {row['ms_per_token']:6.2f} ms/token = head {row['head_ms']:5.2f} + other products "
              f"{row['body_ms']:5.2f} ({row['body_calls_per_token']:.0f} calls, {row['body_gb_per_s']:5.1f} GB/s) "
              f"+ rest {row['rest_ms']:5.2f}   weights {row['weight_mb']:6.1f} MB   speedup {row['speedup']:4.2f}   "
              f"bounds: dense's rest {row['bound_dense_rest']:4.2f}, no rest {row['bound_no_rest']:4.2f}, "
              f"other products at dense's GB/s {row['bound_products_at_dense_rate']:4.2f}")  # fmt: skip
    if args.json:
        write_results(args.json, "decode_bound", {"dtype": args.dtype, "new_tokens": args.new_tokens,
                                                  "untie_head": args.untie_head,
                                                  "rounds": args.rounds, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
