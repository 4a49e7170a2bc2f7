"""Issue 31: GPT-2 124M (built from its config) in full-rank SVD form, SVD-trained on 2 CPU
processes under DDP and under FSDP2: each process's peak memory and the step time.

DDP builds the model and decomposes it in every process (exact SVD). FSDP2 builds it sharded:
shapes on the meta device, random factors, each process materializing its own shards (a real
run loads them with torch.distributed.checkpoint). Each mode is its own torchrun launch (so each process's peak RSS is its own), launched in turn
A B A B; the step time is the median over steps after a warm-up, the ratio of medians over the
rounds. Each process trains on its own batch of random tokens; the loss is the LM loss plus
SVD training's two regularizers (computed on the shards under FSDP2).

Two peaks per process: over its whole life (ru_maxrss: the build included, where DDP holds the
dense model and the SVD's workspaces), and over the training steps alone (after the build,
freed pages returned with malloc_trim and the peak reset through /proc/self/clear_refs), the
CPU's nearest to torch.cuda.max_memory_allocated after a reset.

    python benchmarks/ddp_vs_fsdp.py --out benchmarks/results/issue31_ddp_vs_fsdp.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def worker(mode: str, steps: int, batch: int, length: int, quick: bool = False, recompute: bool = False) -> dict:
    import torch.distributed as dist
    import transformers
    from torch.distributed.fsdp import fully_shard

    import svdtrain
    from svdtrain.surgery.sharded_groups import mark_factors, shard_placement

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    tiny = dict(n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=64) if quick else {}
    config = transformers.GPT2Config(**tiny)
    if mode == "fsdp":  # built sharded: shapes on the meta device, each process materializes its shards only
        with torch.device("meta"):
            model = transformers.GPT2LMHeadModel(config)
        if recompute:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        svdtrain.decompose(model, init="random")
        svd = svdtrain.SVDTraining(model, svdtrain.SVDTrainingConfig(sparsity_weight=1e-3))
        mark_factors(model)
        for block in model.transformer.h:
            fully_shard(block, shard_placement_fn=shard_placement)
        fully_shard(model)
        model.to_empty(device="cpu")
        with torch.no_grad():  # random values (a real run dcp.loads its shards: tests/distributed/test_fsdp.py)
            for p in model.parameters():
                p.to_local().normal_(0, 0.02)
        net = model
    else:
        model = transformers.GPT2LMHeadModel(config)
        if recompute:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        svd = svdtrain.SVDTraining(model, svdtrain.SVDTrainingConfig(sparsity_weight=1e-3))
        net = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(svd.param_groups(1e-4))
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(rank))
    built = _training_peak_from_here()  # the build's own peak (a dense model, SVD workspaces) is not training's
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = net(input_ids=ids, labels=ids).loss + svd.loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    return {"rank": rank, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "rss_before_steps_bytes": built, "training_peak_rss_bytes": _status_bytes("VmHWM") if built else None,
            "step_seconds": statistics.median(seconds[1:]), "local_params": local, "loss": float(loss)}


def _status_bytes(field: str) -> int:
    """A /proc/self/status memory field (kB) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _training_peak_from_here() -> int | None:
    """Release what the build freed (glibc keeps freed pages), then reset the process's peak RSS
    to its RSS now (Linux: 5 to /proc/self/clear_refs), so VmHWM afterwards is the steps' peak.
    Returns the RSS now, or None where the peak cannot be reset."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_bytes("VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", "--json", type=Path, default=Path("benchmarks/results/issue31_ddp_vs_fsdp.json"))
    parser.add_argument("--quick", action="store_true", help="a 2-layer GPT-2 of width 64, one round (seconds)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--recompute", action="store_true",
                        help="activation checkpointing of every block, in both modes (HF gradient_checkpointing)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a torchrun child: the mode
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker, args.steps, args.batch, args.length, args.quick, args.recompute)
        Path(os.environ["RESULT_DIR"], f"{result['rank']}.json").write_text(json.dumps(result))  # not stdout: two writers
        return
    if args.quick:
        args.rounds, args.steps, args.length = 1, 3, 32
    torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=os.path.dirname(sys.executable))
    runs: dict[str, list[list[dict]]] = {"ddp": [], "fsdp": []}
    for _ in range(args.rounds):
        for mode in ("ddp", "fsdp"):
            folder = Path(tempfile.mkdtemp())
            subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", __file__, "--worker", mode,
                                   "--steps", str(args.steps), "--batch", str(args.batch), "--length", str(args.length),
                                   *(["--quick"] if args.quick else []), *(["--recompute"] if args.recompute else [])],
                                  capture_output=True, text=True, check=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1", "RESULT_DIR": str(folder)})  # fmt: skip
            results = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
            runs[mode].append(results)
            print(mode, [(r["rank"], f"{r['peak_rss_bytes'] / 2**30:.2f} GiB",
                          f"steps {(r['training_peak_rss_bytes'] or 0) / 2**30:.2f} GiB", f"{r['step_seconds']:.2f} s")
                         for r in results], flush=True)  # fmt: skip
    peak = {mode: max(r["peak_rss_bytes"] for run in rows for r in run) for mode, rows in runs.items()}
    step = {mode: statistics.median(max(r["step_seconds"] for r in run) for run in rows) for mode, rows in runs.items()}
    summary = {"peak_rss_per_process_bytes": peak, "fsdp_over_ddp_peak": peak["fsdp"] / peak["ddp"],
               "step_seconds": step, "fsdp_over_ddp_step": step["fsdp"] / step["ddp"]}  # fmt: skip
    if all(r["training_peak_rss_bytes"] for rows in runs.values() for run in rows for r in run):
        training = {mode: max(r["training_peak_rss_bytes"] for run in rows for r in run) for mode, rows in runs.items()}
        summary.update(training_peak_rss_per_process_bytes=training,
                       fsdp_over_ddp_training_peak=training["fsdp"] / training["ddp"])
    print(json.dumps(summary, indent=1))
    sys.path.insert(0, str(Path(__file__).parent))
    from _results import write_results

    write_results(args.out, "ddp_vs_fsdp", {"settings": {k: getattr(args, k) for k in ("rounds", "steps", "batch",
                                                                                      "length", "recompute")},
                                            "runs": runs, **summary})  # fmt: skip


if __name__ == "__main__":
    main()
    if torch.distributed.is_initialized():  # gloo torn down at exit without this may abort a process
        torch.distributed.destroy_process_group()
