"""Issue 31: the memory of SVD training planned without allocating (meta device), and the plan
checked against what one Adam step holds where the model fits this machine.

Planned: GPT-2 124M, a 1B and a 7B Llama config; dense, full-rank SVD form and a lean start
(the factors at most the dense weights' parameters); per process under DDP and under 2- and
8-way FSDP sharding. Measured on the CPU: GPT-2 124M and a 1B-shaped Llama of 4 layers, each
form built for real (decompose, lean prune), one AdamW step run, and the bytes of parameters,
gradients and optimizer state counted tensor by tensor, with the process's peak RSS beside them.

    python benchmarks/memory_plan.py --out benchmarks/results/issue31_memory_plan.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_results  # noqa: E402  (beside this script)

import svdtrain  # noqa: E402
from svdtrain.train.memory_plan import memory_plan  # noqa: E402

CONFIGS = {
    "gpt2-124M": ("gpt2", dict()),
    "llama-1B": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True)),
    "llama-1B-4-layers": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=4,
                                        num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                        tie_word_embeddings=True)),
    "gpt2-tiny": ("gpt2", dict(n_layer=1, n_embd=64, n_head=2, vocab_size=256, n_positions=32)),
    "llama-7B": ("llama", dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                               num_key_value_heads=32, vocab_size=32000)),
}
MEASURED = ("gpt2-124M", "llama-1B-4-layers")
FORMS = ("dense", "svd, full rank", "svd, lean start 1")


def build(name: str) -> torch.nn.Module:
    family, fields = CONFIGS[name]
    if family == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(**fields))
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**fields))


def plan(name: str) -> list[dict]:
    with torch.device("meta"):
        model = build(name)
    return [{**row.to_dict(), "per_process": {f"ddp x{n}": row.per_process(n, False) for n in (2, 8)}
             | {f"fsdp x{n}": row.per_process(n, True) for n in (2, 8)}} for row in memory_plan(model)]


def measure(name: str, form: str) -> dict:
    """In this process: the form built, one AdamW step, its tensors counted."""
    torch.manual_seed(0)
    model = build(name)
    if form != "dense":
        svdtrain.decompose(model, untie=[])
        if "lean" in form:
            svdtrain.prune(model, svdtrain.ParamsBudget(1.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    states = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                 if isinstance(v, torch.Tensor) and v.dim() > 0)  # fmt: skip  (not the scalar step counts)
    return {"params": sum(p.numel() for p in model.parameters()), "param_bytes": params, "grad_bytes": grads,
            "optimizer_bytes": states, "total_bytes": params + grads + states,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", "--json", type=Path, default=Path("benchmarks/results/issue31_memory_plan.json"))
    parser.add_argument("--quick", action="store_true", help="a tiny GPT-2 only, planned and measured (seconds)")
    parser.add_argument("--measure", nargs=2, metavar=("MODEL", "FORM"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    names = ("gpt2-tiny",) if args.quick else tuple(name for name in CONFIGS if name != "gpt2-tiny")
    planned = {name: plan(name) for name in names}
    measured = {}
    for name in ("gpt2-tiny",) if args.quick else MEASURED:  # each form in a fresh process, so each peak RSS is its own
        for form in FORMS:
            done = subprocess.run([sys.executable, __file__, "--measure", name, form], capture_output=True, text=True,
                                  check=True)  # fmt: skip
            row = json.loads(done.stdout.strip().splitlines()[-1])
            plan_row = next(r for r in planned[name] if r["form"] == form)
            row["plan_over_measured"] = plan_row["total_bytes"] / row["total_bytes"]
            measured[f"{name}, {form}"] = row
            print(f"{name:18} {form:18} planned {plan_row['total_bytes'] / 2**30:6.2f} GiB  measured "
                  f"{row['total_bytes'] / 2**30:6.2f} GiB  ({row['plan_over_measured']:.3f}x)  peak RSS "
                  f"{row['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)  # fmt: skip
    for name, rows in planned.items():
        print(name, "  ".join(f"{r['form']}: {r['total_bytes'] / 2**30:.2f} GiB (fsdp x8 "
                              f"{r['per_process']['fsdp x8'] / 2**30:.2f})" for r in rows))  # fmt: skip
    write_results(args.out, "memory_plan", {"planned": planned, "measured": measured})


if __name__ == "__main__":
    main()
