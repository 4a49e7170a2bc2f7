"""Per layer: does the low-rank pair's MACs saving show up as time? The diagnosis behind
benchmarks/inference_speed.py.

Prunes a model (random weights, greedy ranks to a MACs budget) and, for every factored
weight with a pair form, times its module deployed dense against deployed as a thin pair on
the module's real input at the given batch size, interleaved, in torch eager (2 threads by
default). A weight whose time ratio trails its MACs ratio is where a compact model loses speed.

    python benchmarks/layer_forms.py --model resnet20 --scheme channel --reduction 2 --batch 64
    python benchmarks/layer_forms.py --quick
"""

from __future__ import annotations

import argparse
from datetime import date

import torch

import svdtrain
from svdtrain.io import atomic_write_json
from svdtrain.models import build_model
from svdtrain.layers import kind_for
from svdtrain.surgery.latency import layer_times
from svdtrain.surgery.macs import record_input_shapes
from svdtrain.surgery.plan import pair_saving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--scheme", default="channel")
    parser.add_argument("--reduction", type=float, default=2.0)
    parser.add_argument("--multiple", type=int, default=1, help="rank multiple of the MacsBudget")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.rounds = 2, 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense = build_model(args.model, 10).eval()
    size = 224 if args.model.startswith("imagenet") else 32
    probe = torch.randn(1, 3, size, size)
    model = svdtrain.decompose(dense, scheme=args.scheme, init="svd")
    budget = int(svdtrain.count_macs(model, probe) / args.reduction)
    svdtrain.prune(model, svdtrain.MacsBudget(probe, max_macs=budget, multiple=args.multiple))
    shapes = record_input_shapes(model, torch.randn(args.batch, 3, size, size))
    rows = []
    width = max(len(name) for name in svdtrain.factored_weights(model))
    print(f"{'weight':<{width}} {'input':>18} {'rank':>9} {'form':>6} {'MACs ratio':>10} {'time ratio':>10} "
          f"{'dense ms':>9} {'pair ms':>8}")  # fmt: skip
    for name, layer in svdtrain.factored_weights(model).items():
        fqn, module, kind = name[: -len(layer.param)].rstrip("."), layer.module, kind_for(layer.module)
        shape = shapes.get(fqn)
        pair_macs = None if shape is None else kind.pair_macs(module, layer.param, shape, layer.rank)
        if pair_macs is None:
            print(f"{name:<{width}} (no pair form, or not run: always deploys dense)")
            continue
        dense_macs = kind.dense_macs(module, layer.param, shape)
        dense_s, pair_s = layer_times(layer, shape, [layer.rank], args.rounds)
        pair_s = pair_s[layer.rank]
        row = {"weight": name, "input_shape": list(shape), "rank": layer.rank, "full_rank": layer.full_rank,
               "compact_form": "pair" if pair_saving(layer, shape) > 0 else "dense",
               "macs_ratio": dense_macs / pair_macs, "time_ratio": dense_s / pair_s,
               "dense_ms": 1e3 * dense_s, "pair_ms": 1e3 * pair_s}  # fmt: skip
        rows.append(row)
        print(f"{name:<{width}} {str(tuple(shape)):>18} {layer.rank:>4}/{layer.full_rank:<4} {row['compact_form']:>6} "
              f"{row['macs_ratio']:>10.2f} {row['time_ratio']:>10.2f} {row['dense_ms']:>9.3f} "
              f"{row['pair_ms']:>8.3f}")  # fmt: skip
    if args.json:
        atomic_write_json(args.json, {"benchmark": "layer_forms", "date": date.today().isoformat(),
                                      "config": vars(args), "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
