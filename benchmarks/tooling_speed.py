"""How long the tooling takes: decompose, choose ranks, prune and compact a large model, and
the exact against the randomized SVD of one large linear layer.

1. ImageNet ResNet-50 (random weights, 224x224 example): seconds for each step of
   decompose -> MacsBudget ranks (2x) -> prune -> compact, each run once in order.
2. One 4096 x 11008 linear layer (an LLM MLP projection) with a decaying spectrum
   (s_i ~ i^-decay, random singular vectors): seconds for the exact SVD and for randomized
   SVD (init="svd_lowrank") at a few ranks, and its accuracy: the relative error of the
   kept singular values and the Frobenius error of the rank-r approximation against the
   best possible (exact truncated SVD).

    python benchmarks/tooling_speed.py
    python benchmarks/tooling_speed.py --quick
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

import svdtrain
from svdtrain.models import build_model
from _results import write_results  # noqa: E402  (beside this script)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def model_pipeline(model_name: str, size: int) -> dict:
    torch.manual_seed(0)
    dense = build_model(model_name, 1000 if model_name.startswith("imagenet") else 10).eval()
    example = torch.randn(1, 3, size, size)
    model, decompose_s = timed(lambda: svdtrain.decompose(copy.deepcopy(dense), scheme="channel", init="svd"))
    budget = svdtrain.count_macs(dense, example) // 2
    ranks, ranks_s = timed(lambda: svdtrain.MacsBudget(example, max_macs=budget).ranks(model))
    _, prune_s = timed(lambda: svdtrain.prune(model, svdtrain.Ranks(ranks)))
    small, compact_s = timed(lambda: svdtrain.compact(model, example))
    with torch.no_grad():
        error = float((small(example) - model(example)).abs().max())
    return {"model": model_name, "weights": len(ranks), "decompose_s": decompose_s, "ranks_for_macs_s": ranks_s,
            "prune_s": prune_s, "compact_s": compact_s, "compact_max_abs_diff": error}  # fmt: skip


def decaying_matrix(m: int, n: int, decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A float32 (m, n) matrix with singular values i^-decay and random singular vectors."""
    torch.manual_seed(0)
    r = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, r))
    V, _ = torch.linalg.qr(torch.randn(n, r))
    s = torch.arange(1, r + 1, dtype=torch.float32).pow(-decay)
    return (U * s) @ V.T, s


def linear_layer(m: int, n: int, decay: float, ranks: list[int]) -> list[dict]:
    matrix, s_true = decaying_matrix(m, n, decay)
    linear = nn.Linear(n, m, bias=False)
    linear.weight.data = matrix
    exact, exact_s = timed(lambda: svdtrain.decompose(nn.Sequential(copy.deepcopy(linear)), init="svd"))
    s_exact = svdtrain.factored_weights(exact)["0.weight"].s.detach().double()
    norm = float(s_exact.pow(2).sum().sqrt())
    rows = [{"method": "exact SVD (float64, all values)", "rank": int(min(m, n)), "seconds": exact_s,
             "singular_value_error": float(((s_exact - s_true.double()).abs() / s_true.double()).max()),
             "approximation_error": 0.0, "best_error": 0.0}]  # fmt: skip
    for rank in ranks:
        best = float(s_exact[rank:].pow(2).sum().sqrt()) / norm  # Eckart-Young: the floor
        model, seconds = timed(lambda: svdtrain.decompose(nn.Sequential(copy.deepcopy(linear)), init="svd_lowrank",
                                                          rank=rank))  # fmt: skip
        handle = svdtrain.factored_weights(model)["0.weight"]
        approx = handle.matrix().detach()
        s_kept = handle.s.detach().double()
        rows.append({"method": "randomized SVD (svd_lowrank)", "rank": rank, "seconds": seconds,
                     "singular_value_error": float(((s_kept - s_exact[:rank]).abs() / s_exact[:rank]).max()),
                     "approximation_error": float(torch.linalg.matrix_norm(approx - matrix)) / norm,
                     "best_error": best})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="imagenet_resnet50")
    parser.add_argument("--shape", default="4096,11008", help="the linear layer's out,in features")
    parser.add_argument("--ranks", default="256,1024")
    parser.add_argument("--decay", type=float, default=0.5, help="singular values i^-decay")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.model, args.shape, args.ranks = "resnet20", "128,256", "16"
    size = 224 if args.model.startswith("imagenet") else 32
    pipeline = model_pipeline(args.model, size)
    print(f"{pipeline['model']} ({pipeline['weights']} factored weights): decompose {pipeline['decompose_s']:.2f} s, "
          f"ranks_for_macs {pipeline['ranks_for_macs_s']:.2f} s, prune {pipeline['prune_s']:.2f} s, "
          f"compact {pipeline['compact_s']:.2f} s (max |diff| {pipeline['compact_max_abs_diff']:.1e})", flush=True)  # fmt: skip
    m, n = (int(v) for v in args.shape.split(","))
    rows = linear_layer(m, n, args.decay, [int(r) for r in args.ranks.split(",")])
    print(f"\nlinear {m} x {n}, s_i = i^-{args.decay:g}")
    print(f"{'method':<32} {'rank':>5} {'seconds':>8} {'max rel. error of s':>20} {'||W - W_r|| / ||W||':>20} "
          f"{'best possible':>14}")  # fmt: skip
    for r in rows:
        print(f"{r['method']:<32} {r['rank']:>5} {r['seconds']:>8.2f} {r['singular_value_error']:>20.2e} "
              f"{r['approximation_error']:>20.4f} {r['best_error']:>14.4f}")  # fmt: skip
    if args.json:
        write_results(args.json, "tooling_speed", {
            "pipeline": pipeline, "linear": {"shape": [m, n], "decay": args.decay, "rows": rows},
        })  # fmt: skip


if __name__ == "__main__":
    main()
