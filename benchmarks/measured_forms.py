"""Does timing each layer's forms compiled choose differently from timing them eager?

An nn.TransformerEncoder (random weights, greedy ranks in multiples of 8 to --reduction x fewer
MACs) is compacted three ways: by MACs, by forms measured in torch eager, and by forms measured
under torch.compile (``compact(choose="measured", compiled=True)``). Printed: the weights whose
form differs, and the three compact models and the dense one all run compiled, timed
interleaved (the deployment the compiled choice is for).

    python benchmarks/measured_forms.py --json benchmarks/results/measured_forms_cpu.json
    python benchmarks/measured_forms.py --quick
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

import svdtrain
from svdtrain.surgery.timing import median_seconds
from _results import write_results  # noqa: E402  (beside this script)
from deploy_speed import compile_for_inference, encoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduction", type=float, default=2.0)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    compile_for_inference()
    dense = encoder(32, 2) if args.quick else encoder(512, 6)
    tokens, rounds = (16, 1) if args.quick else (args.tokens, args.rounds)
    x = torch.randn(8, tokens, dense.layers[0].linear1.in_features)
    model = svdtrain.decompose(copy.deepcopy(dense), init="svd")
    svdtrain.prune(model, svdtrain.MacsBudget(x, reduction=args.reduction, multiple=8))
    compacts, forms, seconds_to_choose = {}, {}, {}
    with torch.no_grad():
        for name, options in {"macs": {}, "eager": {"choose": "measured"},
                              "compiled": {"choose": "measured", "compiled": True}}.items():  # fmt: skip
            started = time.perf_counter()
            compacts[name] = svdtrain.compact(model, x, rounds=rounds, **options).eval()
            seconds_to_choose[name] = time.perf_counter() - started
            forms[name] = svdtrain.deployed_forms(model, compacts[name])
            dense_count = sum(form == "dense" for form in forms[name].values())
            print(f"{name:<8} chosen in {seconds_to_choose[name]:6.1f} s: {dense_count} of {len(forms[name])} "
                  f"weights dense", flush=True)  # fmt: skip
        differ = sorted(n for n in forms["eager"] if forms["eager"][n] != forms["compiled"][n])
        print(f"forms differ between eager and compiled timing: {', '.join(differ) or 'none'}")
        runs = {"dense": dense.eval(), **compacts}
        medians = dict(zip(runs, median_seconds(list(runs.values()), x, rounds, compiled=True)))
    rows = [{"compact": name, "compiled_s": medians[name], "speedup": medians["dense"] / medians[name],
             "macs_reduction": svdtrain.count_macs(dense, x) / svdtrain.count_macs(compacts[name], x),
             "dense_weights": sum(form == "dense" for form in forms[name].values()),
             "seconds_to_choose": seconds_to_choose[name]} for name in compacts]  # fmt: skip
    for row in rows:
        print(f"{row['compact']:<8} compiled {1e3 * row['compiled_s']:7.1f} ms  speedup {row['speedup']:4.2f}  "
              f"MACs/{row['macs_reduction']:4.2f}  {row['dense_weights']} dense")  # fmt: skip
    if args.json:
        write_results(args.json, "measured_forms", {"reduction": args.reduction, "tokens": tokens, "rounds": rounds,
                                                    "dense_s": medians["dense"], "differ": differ, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
