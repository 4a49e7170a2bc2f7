"""Training throughput, dense against SVD form, before and after the sync-free grouped step.

Each variant runs train_epoch-style steps (forward, loss, regularizers, backward, optimizer)
on fixed random batches; blocks of --block steps, variants interleaved (A B C ... A B C),
--rounds rounds after one warm-up round (which also compiles); medians. Variants:

  dense          the plain model, the current loop (fused Adam)
  svd before     SVD form as the loop ran it before: one regularizer term per weight, a
                 host sync each step (finiteness, statistics), for-loop Adam; compiled: the
                 model alone under torch.compile
  svd            SVD form, the current loop: regularizers per group of same-shape factors,
                 no host sync inside a step, fused Adam; compiled: forward, loss and
                 regularizers in one graph (StepLoss)
each eager and compiled, fp32 and bf16 autocast, NCHW and channels_last batches (current loop
only), and on CUDA also compiled with mode="reduce-overhead" (CUDA graphs). Op counts (torch.profiler "aten::" events of one
forward + backward at batch 8, the regularizers included, as the issue counted them; and the
regularizers' forward alone) come first.

    python benchmarks/train_throughput.py                      # ResNet-20 at 128 and 16, ResNet-56 at 128
    python benchmarks/train_throughput.py --device cuda --models resnet20:100,resnet56:100
    python benchmarks/train_throughput.py --quick              # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.profiler import ProfilerActivity, profile

import svdtrain
from svdtrain.models import build_model
from svdtrain.surgery import factored_weights
from svdtrain.surgery.timing import interleaved_medians
from svdtrain.train import Regularization, StepLoss, train_epoch

from _results import write_results  # noqa: E402  (beside this script)

REGULARIZATION = Regularization(1.0, 1e-3, "hoyer")


def _old_orthogonality_penalty(factor: torch.Tensor) -> torch.Tensor:
    """linalg.orthogonality_penalty as it was: one factor at a time."""
    m, n = factor.shape
    with torch.autocast(factor.device.type, enabled=False):
        factor = factor.float() if factor.dtype in (torch.float16, torch.bfloat16) else factor
        gram = factor @ factor.T if m <= n else factor.T @ factor
        k = gram.shape[0]
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        return (gram - eye).pow(2).sum() / (k * k)


def _old_hoyer(s: torch.Tensor) -> torch.Tensor:
    """linalg.sparsity_penalty(s, "hoyer") as it was: one s at a time."""
    magnitude = s.abs().float() if s.dtype in (torch.float16, torch.bfloat16) else s.abs()
    peak = magnitude.detach().max()
    nonzero = peak > 0
    scaled = magnitude / torch.where(nonzero, peak, torch.ones_like(peak))
    l1, l2_sq = scaled.sum(), scaled.pow(2).sum()
    safe_l2_sq = torch.where(nonzero, l2_sq, torch.ones_like(l2_sq))
    return torch.where(nonzero, l1 / safe_l2_sq.sqrt() - 1.0, torch.zeros_like(l1))


def per_weight_regularizers(model) -> torch.Tensor:
    """Regularization(1.0, 1e-3, "hoyer").loss as it was before grouping: a chain of small ops
    per weight (surgery/losses.py then)."""
    weights = factored_weights(model).values()
    ortho = torch.stack([_old_orthogonality_penalty(w.U) + _old_orthogonality_penalty(w.Vh) for w in weights]).sum()
    sparsity = torch.stack([_old_hoyer(w.s) * 1.0 for w in weights]).sum()
    return 0.0 + 1 * 1.0 * ortho + 1 * 1e-3 * sparsity


def before_epoch(net, model, batches, optimizer, precision: str) -> None:
    """The training loop as it was: per-weight regularizers, a sync every step."""
    sums = {"loss": 0.0, "correct": 0.0}
    for inputs, targets in batches:
        with parametrize.cached(), torch.autocast(inputs.device.type, torch.bfloat16, enabled=precision == "bf16"):
            outputs = net(inputs)
            task_loss = F.cross_entropy(outputs.float(), targets)
            loss = task_loss + per_weight_regularizers(model)
        if not bool(torch.isfinite(loss.detach())):
            raise ArithmeticError("diverged")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums["loss"] += task_loss.item()
        sums["correct"] += (outputs.argmax(1) == targets).sum().item()


def aten_events(fn) -> int:
    fn()  # warm-up, outside the count
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for event in prof.events() if event.name.startswith("aten::"))


def op_counts(model_name: str, compiled: bool) -> dict[str, int]:
    """aten events of one forward + backward at batch 8 (CPU), as the issue counted them; with
    ``compiled`` also the compiled step's: the aten ops it still calls (convolutions, matrix
    products, gradient accumulation), Inductor's fused CPU kernels not among them."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    dense = build_model(model_name, 10)
    svd = svdtrain.decompose(copy.deepcopy(dense), scheme="channel")
    terms = REGULARIZATION.bind(svd)
    step = StepLoss(svd, REGULARIZATION)

    def dense_step():
        F.cross_entropy(dense(x), y).backward()

    def before_step():
        with parametrize.cached():
            loss = F.cross_entropy(svd(x), y) + per_weight_regularizers(svd)
        loss.backward()

    def svd_step():
        step((x, y))[0].backward()

    counts = {"dense step": aten_events(dense_step), "svd step before": aten_events(before_step),
              "svd step": aten_events(svd_step),
              "regularizers forward before": aten_events(lambda: per_weight_regularizers(svd)),
              "regularizers forward": aten_events(terms)}  # fmt: skip
    if compiled:
        fast = StepLoss(svd, REGULARIZATION, compile="default")
        counts["svd step compiled"] = aten_events(lambda: fast((x, y))[0].backward())
    return counts


SETTINGS = [  # (precision, compile mode, channels_last); CUDA adds CUDA graphs
    ("fp32", None, False), ("fp32", None, True), ("fp32", "default", False), ("fp32", "default", True),
    ("bf16", None, False), ("bf16", "default", False), ("bf16", "default", True),
]


def variants(device: str, quick: bool) -> list[tuple[str, str, str, str | None, bool]]:
    """(name, form, precision, compile mode, channels_last) of each timed variant; the old loop
    ("svd before") had no channels_last and no CUDA-graph mode."""
    settings = SETTINGS[:2] if quick else list(SETTINGS)
    if device.startswith("cuda") and not quick:
        settings += [("fp32", "reduce-overhead", False), ("bf16", "reduce-overhead", True)]
    out = []
    for precision, mode, channels_last in settings:
        label = {None: "eager", "default": "compiled", "reduce-overhead": "CUDA graphs"}[mode]
        label += f", {precision}" + (", channels_last" if channels_last else "")
        for form in ("dense", "svd before", "svd"):
            if form == "svd before" and (channels_last or mode == "reduce-overhead"):
                continue
            out.append((f"{form}, {label}", form, precision, mode, channels_last))
    return out


def runner(base_dense, base_svd, form: str, precision: str, mode: str | None, channels_last: bool, batches,
           device: str):  # fmt: skip
    model = copy.deepcopy(base_dense if form == "dense" else base_svd).to(device)
    if form == "svd before":
        net = torch.compile(model) if mode else model
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
        return lambda: before_epoch(net, model, batches, optimizer, precision)
    regularization = Regularization() if form == "dense" else REGULARIZATION
    step = StepLoss(model, regularization, precision=precision, compile=mode, channels_last=channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    return lambda: train_epoch(model, batches, optimizer, regularization, device, step_loss=step)


def throughput(model_name: str, batch_size: int, device: str, block: int, rounds: int, quick: bool) -> list[dict]:
    torch.manual_seed(0)
    base_dense = build_model(model_name, 10)
    base_svd = svdtrain.decompose(copy.deepcopy(base_dense), scheme="channel")
    batches = [(torch.randn(batch_size, 3, 32, 32, device=device), torch.randint(0, 10, (batch_size,), device=device))
               for _ in range(block)]  # fmt: skip
    chosen = variants(device, quick)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    calls = []
    for _, *setting in chosen:
        run = runner(base_dense, base_svd, *setting, batches, device)
        run()  # compiles, outside the timing

        def timed(run=run):
            run()
            sync()

        calls.append(timed)
    medians = interleaved_medians(calls, rounds, warmup=1)
    rows = []
    for (name, form, precision, mode, channels_last), seconds in zip(chosen, medians):
        per_step = seconds / block
        rows.append({"model": model_name, "batch": batch_size, "device": device, "variant": name, "form": form,
                     "precision": precision, "compile": mode or "eager", "channels_last": channels_last,
                     "seconds_per_step": per_step, "steps_per_s": 1 / per_step,
                     "images_per_s": batch_size / per_step})  # fmt: skip
    return rows


def main() -> None:
    # Every decomposed model has classes of its own (parametrize makes a ParametrizedConv2d per
    # module), so each compiled variant recompiles StepLoss's one frame: allow one per variant,
    # or dynamo falls back to eager after 8 and a "compiled" row would time eager steps.
    torch._dynamo.config.recompile_limit = 256
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20:128,resnet20:16,resnet56:128",
                        help="model:batch, comma-separated")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--block", type=int, default=4, help="steps per timed block (one train_epoch call)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.models, args.block, args.rounds = "resnet20:4", 2, 1
    result = {"ops": {}, "rows": []}
    counted = set()
    for item in args.models.split(","):
        model_name, batch_size = item.split(":")
        if model_name not in counted:
            counted.add(model_name)
            ops = result["ops"][model_name] = op_counts(model_name, compiled=not args.quick)
            print(f"{model_name} aten ops (batch 8, forward + backward): "
                  + ", ".join(f"{k} {v}" for k, v in ops.items())
                  + f"; svd step / dense {ops['svd step'] / ops['dense step']:.2f}x "
                  f"(before {ops['svd step before'] / ops['dense step']:.2f}x)", flush=True)  # fmt: skip
        rows = throughput(model_name, int(batch_size), args.device, args.block, args.rounds, args.quick)
        reference = {(r["precision"], r["compile"], r["channels_last"]): r["seconds_per_step"]
                     for r in rows if r["form"] == "dense"}  # fmt: skip
        eager_before = next(r["seconds_per_step"] for r in rows if r["variant"] == "svd before, eager, fp32")
        for row in rows:
            row["vs_dense_same_setting"] = row["seconds_per_step"] / reference[(row["precision"], row["compile"],
                                                                                row["channels_last"])]
            row["speedup_vs_svd_before_eager_fp32"] = eager_before / row["seconds_per_step"]
            print(f"  {model_name} batch {batch_size} {row['variant']:<42} {row['seconds_per_step']:.4f} s/step "
                  f"{row['images_per_s']:8.0f} img/s  {row['vs_dense_same_setting']:.2f}x dense  "
                  f"{row['speedup_vs_svd_before_eager_fp32']:.2f}x faster than svd before eager fp32",
                  flush=True)  # fmt: skip
        result["rows"] += rows
    if args.json:
        write_results(args.json, "train_throughput", {"block": args.block, "rounds": args.rounds, **result})


if __name__ == "__main__":
    main()
