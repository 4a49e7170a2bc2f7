"""A real preset on N torchrun processes (gloo, CPU) against one process at the same global batch
(issue 11): the ranks pruning chose, every stage's validation loss, the compact model's MACs and
its exported logits, and the wall time of each stage. A third run, one process at the threads
each distributed process has, changes only the order of floating-point reductions: how far
it lands from the first is the yardstick for how far the distributed run may.

The default is the GPT preset (LayerNorm, no dropout) shortened to one epoch a stage, with the
paper's recipe (as recorded; the default, named). Language-model
presets only: the exported models are compared on token ids. Each process of the
distributed run gets cores / N threads, so both runs use the whole machine. Runs resume: a
finished run's report is read back, not redone.

    python benchmarks/distributed_equivalence.py --json benchmarks/results/distributed_gpt.json
    python benchmarks/distributed_equivalence.py --quick   # the smoke LM preset on its own text, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from svdtrain.export import load_compact
from svdtrain.models import is_language_model
from svdtrain.pipeline.config import resolve_config
from _results import write_results  # noqa: E402  (beside this script)

STAGES = ("start", "svd_train", "prune", "finetune")
SHORT = ["--start-epochs", "1", "--svd-epochs", "1", "--finetune-epochs", "1"]


def run(args: list[str], out: Path, processes: int, threads: int) -> float | None:
    """Seconds the whole run took (None when its report was already there: the stage times in
    the reports are what to compare)."""
    if (out / "report.json").exists():
        return None
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
    if not is_language_model(resolve_config(args.preset).model):
        parser.error(f"{args.preset} is not a language-model preset")
    flags = ["--preset", args.preset, "--export-onnx", "false", "--recipe", "paper", *([] if args.full else SHORT),
             *extra]  # fmt: skip
    out, threads = Path(args.out), max(1, cores // args.processes)
    # the control: one process at the distributed run's threads per process, a change of the
    # reduction order alone, for scale
    runs = {"one-process": (1, cores), f"{args.processes}-processes": (args.processes, threads),
            f"one-process-{threads}-threads": (1, threads)}  # fmt: skip
    wall = {name: run(flags, out / name, processes, n) for name, (processes, n) in runs.items()}
    config = json.loads((out / "one-process" / "config.json").read_text())
    vocabulary = len(set(Path(config["data"]["path"]).read_text()))
    names = list(runs)
    result = {name: compare(out / names[0], out / name, vocabulary, config["data"]["block_length"]) for name in names[1:]}
    print(f"{'stage':<10} {'loss, ' + names[0]:>20} " + " ".join(f"{name:>24} {'rel.':>7}" for name in names[1:]))
    for stage in STAGES:
        base = result[names[1]]["loss"][stage][0]
        row = " ".join(f"{r['loss'][stage][1]:>24.5f} {abs(r['loss'][stage][1] - base) / base:>7.1e}" for r in result.values())
        print(f"{stage:<10} {base:>20.5f} {row}")
    print("seconds:  " + "  ".join(f"{name} {sum(r['seconds'][s][1] for s in STAGES):.0f}" for name, r in result.items())
          + f"  {names[0]} {sum(result[names[1]]['seconds'][s][0] for s in STAGES):.0f}")  # fmt: skip
    for name, r in result.items():
        print(f"{name} against {names[0]}: {r['ranks_differing']} ranks differ, MACs {r['macs']}, exported logits "
              f"differ by at most {r['logits_max_abs_difference']:.2e} (largest logit {r['logits_max_abs']:.1f})")  # fmt: skip
    if args.json:
        write_results(args.json, "distributed_equivalence", {
            "command": " ".join(sys.argv), "preset": args.preset, "processes": args.processes,
            "threads": {name: n for name, (_, n) in runs.items()}, "wall_seconds": wall,
            "against_one_process": result,
        })  # fmt: skip


if __name__ == "__main__":
    main()
