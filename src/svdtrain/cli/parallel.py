"""``svdtrain parallel``: several svdtrain commands at once on one machine (seeds or methods of a
comparison sharing one GPU), each a process of its own with its share of the CPU threads.

A small CIFAR model uses a fraction of a large GPU, and a step bound by launches leaves the
GPU idle between kernels; processes interleave their kernels on it. Each process keeps its own
copy of the data on the device (150 MB for CIFAR-10). Processes, not one process stepping
several models: each run stays an ordinary run (its own folder, resume, report), and one
that fails or diverges does not stop the others.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from svdtrain.io import atomic_write_text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("parallel", help="run several svdtrain commands at once, e.g. seeds on one GPU")
    parser.add_argument("commands", nargs="+", metavar="COMMAND",
                        help="one quoted svdtrain command line each, e.g. 'run --preset smoke --seed 1 --out runs/s1'")
    parser.add_argument("--jobs", type=int, default=0, help="how many at once (0: all)")
    parser.add_argument("--logs", default="runs/parallel", help="folder for each command's output (<index>.log)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    commands = [_parse(text) for text in args.commands]
    if args.jobs < 0:
        raise ValueError(f"--jobs must be >= 0, got {args.jobs}")
    jobs = args.jobs or len(commands)
    threads = max(1, (os.cpu_count() or 1) // min(jobs, len(commands)))
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    waiting, running, codes = list(enumerate(commands)), {}, {}
    started = time.perf_counter()
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                index, argv = waiting.pop(0)
                log = open(logs / f"{index}.log", "wb")  # noqa: SIM115  (closed when the process ends)
                running[index] = (subprocess.Popen([sys.executable, "-m", "svdtrain", *argv], stdout=log,
                                                   stderr=subprocess.STDOUT, env=env), log)  # fmt: skip
            for index, (process, log) in list(running.items()):
                if process.poll() is not None:
                    log.close()
                    codes[index] = process.returncode
                    del running[index]
                    print(f"[{index}] exit {process.returncode}: svdtrain {shlex.join(commands[index])}", flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:  # each run stops as an interrupted run does: its finished epochs kept for --resume
        for process, _ in running.values():
            process.send_signal(signal.SIGINT)
        for process, log in running.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
        raise
    summary = "".join(f"{i}\t{codes[i]}\tsvdtrain {shlex.join(c)}\n" for i, c in enumerate(commands))
    atomic_write_text(logs / "exit_codes.tsv", summary)
    failed = [i for i in sorted(codes) if codes[i]]
    print(f"{len(commands) - len(failed)} of {len(commands)} succeeded in {time.perf_counter() - started:.0f} s "
          f"({threads} threads each); logs in {logs}")  # fmt: skip
    if failed:
        raise ValueError(f"command(s) {', '.join(map(str, failed))} failed; see {logs}/<index>.log")
    return 0


def _parse(text: str) -> list[str]:
    from svdtrain.cli import build_parser  # the subcommands there are, less this one

    try:
        argv = shlex.split(text)
    except ValueError as error:
        raise ValueError(f"cannot split command {text!r}: {error}") from None
    commands = next(a.choices for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if not argv or argv[0] not in set(commands) - {"parallel"}:
        raise ValueError(f"each command is an svdtrain subcommand line such as 'run --preset smoke', got {text!r}")
    return argv
