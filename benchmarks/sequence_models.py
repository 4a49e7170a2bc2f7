"""Sequence models in SVD form: training-step overhead and realized inference speed.

Models (random weights: timing does not depend on what they learned):
  lstm        character-level LSTM LM: vocab 65, embedding 256, 2 x LSTM(512), T = 64
  lstm_paper  the paper's word-level LSTM LM: vocab 33,278 (WikiText-2), 2 x LSTM(1500), T = 35
  gpt         nanoGPT-sized GPT: vocab 65, 4 layers, 4 heads, width 128, T = 64

train: dense against the full-rank SVD form (SVD init, orthogonality + Hoyer terms, Adam),
  and with lazy regularization (the two terms on one step in 4, weighted by 4); steps timed
  interleaved, ratio of medians; exact tensor memory as in train_step_overhead.py
  (4 x parameter bytes + every tensor autograd saves, once per storage).
recurrent: why W_hh deploys dense: a fused dense LSTM layer against the same layer run step by
  step in Python with its recurrent matrix factored at rank h/2 and h/4.
speed: the compact model at about 2x and 3x fewer MACs (greedy ranks, multiples of 8)
  against dense, in torch eager and ONNX Runtime, at batch 1 and 16 sequences; speedup over
  the MACs reduction as in BENCHMARKS.md section 2.

    python benchmarks/sequence_models.py train --models lstm:32,gpt:32
    python benchmarks/sequence_models.py speed --models lstm,lstm_paper,gpt
    python benchmarks/sequence_models.py recurrent
    python benchmarks/sequence_models.py train --quick        # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import io
import warnings
from functools import partial

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

import svdtrain
from svdtrain.models import GPT, LSTMLanguageModel
from svdtrain.surgery.timing import interleaved_medians
from svdtrain.train import Regularization

from _tensor_memory import training_tensor_bytes  # noqa: E402  (beside this script)
from _results import write_results  # noqa: E402  (beside this script)

MODELS = {
    "lstm": (partial(LSTMLanguageModel, 65, embedding=256, hidden=512, dropout=0.0), 65, 64),
    "lstm_paper": (partial(LSTMLanguageModel, 33278, embedding=1500, hidden=1500, dropout=0.0), 33278, 35),
    "gpt": (partial(GPT, 65), 65, 64),
    "tiny_lstm": (partial(LSTMLanguageModel, 11, embedding=8, hidden=16, dropout=0.0), 11, 6),
    "tiny_gpt": (partial(GPT, 11, context=6, layers=1, heads=2, width=8), 11, 6),
}
VARIANTS = {"dense": None, "svd": Regularization(1.0, 1e-3, "hoyer"), "svd_lazy4": Regularization(1.0, 1e-3, "hoyer", every=4)}


def build(name: str, factored: bool):
    make, vocab, length = MODELS[name]
    torch.manual_seed(0)
    model = make()
    if factored:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # embeddings and the tied GPT head stay dense
            svdtrain.decompose(model)
    return model, vocab, length


def make_step(name: str, variant: str, batch: int):
    model, vocab, length = build(name, variant != "dense")
    ids = torch.randint(0, vocab, (batch, length + 1))
    regularization = VARIANTS[variant] or Regularization()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the pipeline builds it
    terms = regularization.bind(model) if variant != "dense" else None  # grouped once, as train_epoch does
    counter = iter(range(10**9))

    def loss_of() -> torch.Tensor:
        logits = model(ids[:, :-1])  # (B, T, vocab)
        task = F.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
        regularize = terms is not None and next(counter) % regularization.every == 0
        return task + terms() if regularize else task

    def step() -> None:
        with parametrize.cached():  # as the training loop runs a step: each weight rebuilt once
            loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return model, step, loss_of


def tensor_bytes(name: str, variant: str, batch: int) -> int:
    model, _, loss_of = make_step(name, variant, batch)
    return training_tensor_bytes(model, loss_of)


def train_rows(specs: list[str], rounds: int, block: int) -> list[dict]:
    rows = []
    print(f"{'model':<11} {'batch':>5} {'variant':<10} {'s/step':>8} {'time ratio':>10} {'tensors MiB':>11} {'ratio':>6}")
    for spec in specs:
        name, batch = spec.split(":")
        steps = {variant: make_step(name, variant, int(batch))[1] for variant in VARIANTS}
        medians = interleaved_medians([lambda s=s: [s() for _ in range(block)] for s in steps.values()], rounds, 1)
        seconds = {variant: m / block for variant, m in zip(steps, medians)}
        tensors = {variant: tensor_bytes(name, variant, int(batch)) for variant in VARIANTS}
        for variant in VARIANTS:
            row = {"model": name, "batch_size": int(batch), "variant": variant, "median_seconds": seconds[variant],
                   "time_ratio": seconds[variant] / seconds["dense"], "tensor_bytes": tensors[variant],
                   "tensor_ratio": tensors[variant] / tensors["dense"]}  # fmt: skip
            rows.append(row)
            print(f"{name:<11} {batch:>5} {variant:<10} {row['median_seconds']:>8.4f} {row['time_ratio']:>10.3f} "
                  f"{row['tensor_bytes'] / 2**20:>11.1f} {row['tensor_ratio']:>6.3f}", flush=True)  # fmt: skip
    return rows


def compact_at(name: str, reduction: float, example: torch.Tensor, multiple: int):
    """The compact model at ``reduction`` x fewer MACs (greedy ranks, multiples of 8), its MACs and params."""
    model, _, _ = build(name, True)
    dense_macs = svdtrain.count_macs(model, example)
    ranks = svdtrain.MacsBudget(example, max_macs=int(dense_macs / reduction), multiple=multiple).ranks(model)
    svdtrain.prune(model, svdtrain.Ranks(ranks))
    small = svdtrain.compact(model, example).eval()
    return small, svdtrain.count_macs(small, example), svdtrain.count_params(small)


def onnx_runner(model, example: torch.Tensor):
    import onnxruntime

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=["ids"],
                          dynamic_axes={"ids": {0: "batch", 1: "time"}})  # fmt: skip
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see inference_speed.py
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"ids": example.numpy()}
    return lambda: session.run(None, feed)


def speed_rows(names: list[str], reductions: list[float], batches: list[int], rounds: int, multiple: int) -> list[dict]:
    rows = []
    print(f"{'model':<11} {'batch':>5} {'runtime':<7} {'variant':<8} {'MACs cut':>8} {'params cut':>10} "
          f"{'ms':>9} {'speedup':>8} {'speedup/cut':>11}")  # fmt: skip
    for name in names:
        _, vocab, length = MODELS[name]
        for batch in batches:
            example = torch.randint(0, vocab, (batch, length))
            dense, _, _ = build(name, False)
            dense.eval()
            variants = {"dense": (dense, svdtrain.count_macs(dense, example), svdtrain.count_params(dense))}
            for reduction in reductions:
                try:
                    variants[f"{reduction:g}x"] = compact_at(name, reduction, example, multiple)
                except ValueError as why:  # e.g. an LSTM whose dense W_hh alone is over budget
                    print(f"{name:<11} {batch:>5} {reduction:g}x out of reach: {why}", flush=True)
                    rows.append({"model": name, "batch_size": batch, "variant": f"{reduction:g}x",
                                 "unreachable": str(why)})  # fmt: skip
            for runtime in ("eager", "onnxrt"):
                with torch.no_grad():
                    calls = [partial(m, example) if runtime == "eager" else onnx_runner(m, example)
                             for m, _, _ in variants.values()]  # fmt: skip
                    medians = interleaved_medians(calls, rounds, 2)
                base_macs, base_params = variants["dense"][1], variants["dense"][2]
                for (variant, (_, macs, params)), median in zip(variants.items(), medians):
                    row = {"model": name, "batch_size": batch, "length": length, "runtime": runtime,
                           "variant": variant, "macs": macs, "params": params, "macs_cut": base_macs / macs,
                           "params_cut": base_params / params, "median_seconds": median,
                           "speedup": medians[0] / median}  # fmt: skip
                    row["speedup_over_cut"] = row["speedup"] / row["macs_cut"]
                    rows.append(row)
                    print(f"{name:<11} {batch:>5} {runtime:<7} {variant:<8} {row['macs_cut']:>8.2f} "
                          f"{row['params_cut']:>10.2f} {median * 1e3:>9.2f} {row['speedup']:>8.2f} "
                          f"{row['speedup_over_cut']:>11.2f}", flush=True)  # fmt: skip
    return rows


def looped_low_rank_lstm(lstm: torch.nn.LSTM, rank: int):
    """One LSTM layer with W_hh = U diag(s) Vh at ``rank`` run step by step (the only way to use
    a factored recurrent matrix without a custom kernel); returns a callable on (B, T, in)."""
    U, s, Vh = torch.linalg.svd(lstm.weight_hh_l0.detach(), full_matrices=False)
    U, Vh = (U[:, :rank] * s[:rank]).contiguous(), Vh[:rank].contiguous()  # (4h, r), (r, h)
    w_ih, bias = lstm.weight_ih_l0.detach(), (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach()

    def run(x: torch.Tensor) -> torch.Tensor:
        gates_x = F.linear(x, w_ih, bias)  # (B, T, 4h), all steps at once
        h = c = x.new_zeros(x.shape[0], lstm.hidden_size)
        outputs = []
        for t in range(x.shape[1]):
            gates = gates_x[:, t] + F.linear(F.linear(h, Vh), U)  # (B, 4h) through rank r
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, 1)

    return run


def recurrent_rows(hidden: int, length: int, batches: list[int], rounds: int) -> list[dict]:
    """Fused dense LSTM layer against a step-by-step loop with a factored W_hh at h/2 and h/4."""
    rows = []
    print(f"{'hidden':>6} {'batch':>5} {'form':<18} {'ms':>9} {'time vs fused dense':>20}")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(hidden, hidden, batch_first=True).eval()
    for batch in batches:
        x = torch.randn(batch, length, hidden)
        forms = {"fused dense": lambda: lstm(x)}
        for divisor in (2, 4):
            forms[f"loop, W_hh rank h/{divisor}"] = partial(looped_low_rank_lstm(lstm, hidden // divisor), x)
        with torch.no_grad():
            medians = interleaved_medians(list(forms.values()), rounds, 2)
        for form, median in zip(forms, medians):
            rows.append({"hidden": hidden, "length": length, "batch_size": batch, "form": form,
                         "median_seconds": median, "time_ratio": median / medians[0]})  # fmt: skip
            print(f"{hidden:>6} {batch:>5} {form:<18} {median * 1e3:>9.2f} {median / medians[0]:>20.2f}", flush=True)
    return rows


def run_part(part: str, args: argparse.Namespace) -> list[dict]:
    quick = args.quick
    rounds = 2 if quick else args.rounds
    batches = [2] if quick else [int(b) for b in args.batches.split(",")]
    if part == "train":
        models = args.models or ("tiny_lstm:2,tiny_gpt:2" if quick else "lstm:32,gpt:32")
        return train_rows(models.split(","), rounds, 4 if quick else args.block)
    if part == "recurrent":
        return recurrent_rows(16 if quick else 512, 6 if quick else 64, batches, rounds)
    models = args.models or ("tiny_lstm,tiny_gpt" if quick else "lstm,lstm_paper,gpt")
    reductions = [1.2] if quick else [float(r) for r in args.reductions.split(",")]
    return speed_rows(models.split(","), reductions, batches, rounds, 1 if quick else args.multiple)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=("train", "speed", "recurrent", "all"), default="all")
    parser.add_argument("--models", help="train: model:batch pairs (default lstm:32,gpt:32); speed: model names")
    parser.add_argument("--reductions", default="2,3", help="speed: MACs reductions")
    parser.add_argument("--batches", default="1,16", help="speed and recurrent: batch sizes")
    parser.add_argument("--multiple", type=int, default=8, help="speed: pruned ranks are multiples of this")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=3, help="train: consecutive steps per variant per round")
    parser.add_argument("--quick", action="store_true", help="tiny models, for the test suite")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    parts = ["train", "recurrent", "speed"] if args.part == "all" else [args.part]
    if args.models and len(parts) > 1:
        parser.error("--models means different things per part: name one part")
    results = {part: run_part(part, args) for part in parts}
    if args.json:
        write_results(args.json, "sequence_models", {
            **results,
        })  # fmt: skip


if __name__ == "__main__":
    main()
