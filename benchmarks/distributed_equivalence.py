"""A real preset on N torchrun processes (gloo, CPU) against one process at the same global batch
(issue 11): the ranks pruning chose, every stage's validation loss, the compact model's MACs and
its exported logits, and the wall time of each stage.

The default is the GPT preset (LayerNorm, no dropout: a CNN's BatchNorm normalizes per process
on CPU, where SyncBatchNorm does not run) shortened to one epoch a stage. Each process of the
distributed run gets cores / N threads, so both runs use the whole machine. Runs resume: a
finished run's report is read back, not redone.

    python benchmarks/distributed_equivalence.py --json benchmarks/results/distributed_gpt.json
    python benchmarks/distributed_equivalence.py --quick   # the smoke LM preset on its own text, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from svdtrain.deploy.export import load_compact
from svdtrain.io import atomic_write_json

STAGES = ("start", "svd_train", "prune", "finetune")
SHORT = ["--start-epochs", "1", "--svd-epochs", "1", "--finetune-epochs", "1"]


def run(args: list[str], out: Path, processes: int, threads: int) -> float:
    """Seconds the whole run took (0 when its report was already there)."""
    if (out / "report.json").exists():
        return 0.0
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    launcher = [torchrun, "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    begun = time.perf_counter()
    resume = ["--resume"] if out.exists() else []
    subprocess.run([*launcher, "-m", "svdtrain", "run", *args, "--out", str(out), *resume], env=env, check=True)
    return time.perf_counter() - begun


def compare(one: Path, many: Path, vocabulary: int, context: int) -> dict:
    a, b = (json.loads((path / "report.json").read_text()) for path in (one, many))
    torch.manual_seed(0)
    ids = torch.randint(0, vocabulary, (8, context))
    with torch.no_grad():
        logits_a, logits_b = load_compact(one / "export")(ids), load_compact(many / "export")(ids)
    return {
        "same_ranks": a["layers"] == b["layers"],
        "ranks_differing": sum(x != y for x, y in zip(a["layers"], b["layers"])),
        "loss": {stage: [a["stages"][stage]["loss"], b["stages"][stage]["loss"]] for stage in STAGES},
        "seconds": {stage: [a["stages"][stage]["seconds"], b["stages"][stage]["seconds"]] for stage in STAGES},
        "macs": [a["compact"]["macs"], b["compact"]["macs"]],
        "logits_max_abs_difference": (logits_a - logits_b).abs().max().item(),
        "logits_max_abs": logits_a.abs().max().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-gpt-hoyer")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="the preset's own epochs, not one a stage")
    parser.add_argument("--out", default="runs/distributed")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args, extra = parser.parse_known_args()
    if args.quick:  # needs no shared data folder
        args.preset, args.out = "smoke-lm", tempfile.mkdtemp()
        text = Path(args.out) / "text.txt"
        text.write_text("To be, or not to be, that is the question:\n" * 80)
        extra += ["--data", str(text)]
    cores = os.cpu_count() or 1
    flags = ["--preset", args.preset, "--export-onnx", "false", *([] if args.full else SHORT), *extra]
    out = Path(args.out)
    one, many = out / "one-process", out / f"{args.processes}-processes"
    wall = [run(flags, one, 1, cores), run(flags, many, args.processes, max(1, cores // args.processes))]
    config = json.loads((one / "config.json").read_text())
    vocabulary = len(set(Path(config["data"]["path"]).read_text()))
    result = compare(one, many, vocabulary, config["data"]["block_length"])
    print(f"{'stage':<10} {'loss, 1 process':>16} {f'{args.processes} processes':>14} {'relative':>10} "
          f"{'s, 1 proc':>10} {f's, {args.processes} procs':>11}")  # fmt: skip
    for stage in STAGES:
        (la, lb), (sa, sb) = result["loss"][stage], result["seconds"][stage]
        print(f"{stage:<10} {la:>16.5f} {lb:>14.5f} {abs(lb - la) / la:>10.1e} {sa:>10.1f} {sb:>11.1f}")
    print(f"same ranks: {result['same_ranks']}  MACs {result['macs']}  exported logits differ by at most "
          f"{result['logits_max_abs_difference']:.2e} (largest logit {result['logits_max_abs']:.1f})")  # fmt: skip
    if args.json:
        atomic_write_json(args.json, {
            "benchmark": "distributed_equivalence", "date": date.today().isoformat(),
            "machine": f"{platform.machine()}, {cores} cores, torch {torch.__version__}",
            "command": " ".join(sys.argv), "preset": args.preset, "processes": args.processes,
            "wall_seconds": wall, **result,
        })  # fmt: skip


if __name__ == "__main__":
    main()
