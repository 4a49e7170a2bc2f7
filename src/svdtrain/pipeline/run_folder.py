"""RunFolder: the one place that knows what a run folder holds and where.

    config.json                  the resolved config (sections)
    <stage>.pt                   a finished stage: its model (state dict + ranks), its record, and
                                 the checksum of the stage file it was made from (its input)
    <stage>.ckpt.pt              a training stage's last epoch, for --resume
    <stage>.ckpt.prev.pt         the epoch before it, in case the last one is damaged
    *.pt.sha256                  each checkpoint's checksum
    metrics/<stage>.csv          per-epoch metrics
    adapted_dense.pt             the dense model trained here (init svd with start epochs)
    export/                      the compact model's files
    report.json, *.png           the finished run
    sweep.json, w<weight>_e<energy>/   a sweep and its runs
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # not POSIX: folders go unlocked
    fcntl = None

from svdtrain.bounds import read_json
from svdtrain.export import EXPORT_FILES
from svdtrain.train.checkpoint import checksum_path, previous_path

STAGES = ("start", "svd_train", "prune", "finetune", "export", "report")
PLOTS = ("spectra.png", "ranks.png", "accuracy_vs_macs.png", "loss_vs_macs.png")
_SWEEP_RUNS = "w*_e*"
# The first dot-separated part of every file name a run folder holds (for its temporary files).
_NAMES = {"config", "report", "sweep", "adapted_dense", *(p.split(".")[0] for p in PLOTS), *STAGES,
          *(name.split(".")[0] for name in EXPORT_FILES)}  # fmt: skip


def input_stage(stage: str) -> str | None:
    """The stage whose file ``stage`` is made from: the one before it (start is made from none).
    Later stages read earlier ones too (the start model as a teacher), but through this chain."""
    index = STAGES.index(stage)
    return STAGES[index - 1] if index else None


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- the layout ------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def report(self) -> Path:
        return self.path / "report.json"

    @property
    def sweep(self) -> Path:
        return self.path / "sweep.json"

    @property
    def adapted_dense(self) -> Path:
        return self.path / "adapted_dense.pt"

    @property
    def export(self) -> Path:
        return self.path / "export"

    def stage(self, stage: str) -> Path:
        return self.path / f"{stage}.pt"

    def checkpoint(self, stage: str) -> Path:
        return self.path / f"{stage}.ckpt.pt"

    def metrics(self, stage: str) -> Path:
        return self.path / "metrics" / f"{stage}.csv"

    def plot(self, name: str) -> Path:
        return self.path / name

    def sweep_run(self, label: str) -> RunFolder:
        return RunFolder(self.path / label)

    # -- state ---------------------------------------------------------------------------
    def done(self, stage: str) -> bool:
        """The stage's file is there (whether it still holds: ``Experiment``'s business)."""
        return (self.report if stage == "report" else self.stage(stage)).exists()

    def outputs(self, stage: str) -> list[Path]:
        """What a finished stage leaves: its file (report: report.json); export also the compact
        model's weights and spec (its other files depend on the config)."""
        if stage == "report":
            return [self.report]
        compact_model = [self.export / "weights.pt", self.export / "spec.json"] if stage == "export" else []
        return [self.stage(stage), *compact_model]

    def read_config(self) -> dict | None:
        """The saved config's options as written (sections, or the flat keys of older runs), less
        the record of where they came from (``provenance``); None if absent."""
        if not self.config.exists():
            return None
        saved = read_json(self.config, what="run config")
        return {k: v for k, v in saved.items() if k != "provenance"} if isinstance(saved, dict) else saved

    def checkpoint_files(self, stage: str) -> list[Path]:
        """A training stage's epoch checkpoints: the last, the one before, their checksums."""
        ckpt = self.checkpoint(stage)
        return [ckpt, checksum_path(ckpt), previous_path(ckpt), checksum_path(previous_path(ckpt))]

    def drop_checkpoints(self, stage: str) -> None:
        """Once the stage's own file is written its epoch checkpoints are spent."""
        for path in self.checkpoint_files(stage):
            path.unlink(missing_ok=True)

    def remove_stage(self, stage: str) -> None:
        """Delete a stage's file (and checksum), e.g. when it is damaged and must be redone."""
        for path in (self.stage(stage), checksum_path(self.stage(stage))):
            path.unlink(missing_ok=True)

    def written_files(self) -> list[Path]:
        """Every file svdtrain writes here that exists now (sweep runs not included)."""
        checkpoints = [self.adapted_dense, *(self.stage(s) for s in STAGES)]
        paths = [self.config, self.report, self.sweep, *(self.plot(name) for name in PLOTS),
                 *checkpoints, *(checksum_path(p) for p in checkpoints),
                 *(p for s in STAGES for p in self.checkpoint_files(s)),
                 *(self.metrics(s) for s in STAGES), *(self.export / name for name in EXPORT_FILES)]  # fmt: skip
        # A crash inside an atomic write leaves its temporary file (.<name>.<random>.tmp) behind.
        for folder in (self.path, self.path / "metrics", self.export):
            paths += [tmp for tmp in folder.glob(".*.tmp") if tmp.name[1:].split(".")[0] in _NAMES]
        return [path for path in paths if path.is_file()]

    def sweep_runs(self) -> list[RunFolder]:
        return [RunFolder(sub) for sub in sorted(self.path.glob(_SWEEP_RUNS)) if (sub / "config.json").is_file()]

    def clear(self) -> None:
        """Delete what svdtrain wrote here, and nothing else."""
        for sub in self.sweep_runs():
            sub.clear()
        for path in self.written_files():
            path.unlink()
        for folder in (self.path / "metrics", self.export, *self.path.glob(_SWEEP_RUNS)):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder for one svdtrain process while it writes there: a second ``run``,
        ``--resume`` or ``--overwrite`` on a live folder is refused, not let in to delete or
        overwrite the first one's files. The lock is the kernel's (``flock``), so a killed
        process leaves none behind, only a ``.svdtrain.lock`` file the next run takes over."""
        if fcntl is None:
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / ".svdtrain.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise ValueError(f"{self.path} is in use by another svdtrain process (pid {holder or 'unknown'}); "
                             "wait for it to end or choose another --out") from None  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            os.close(fd)  # releases the lock

    def prepare(self, *, overwrite: bool, resume: bool, check_only: bool = False) -> None:
        """Guard the folder: a finished run needs --overwrite, an unfinished one --resume or
        --overwrite; --overwrite deletes only the files svdtrain wrote there. ``check_only``
        raises what it would raise and changes nothing (every process of a distributed run
        checks; one prepares)."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a directory")
        finished = [path.name for path in (self.report, self.sweep) if path.is_file()]
        if finished and not overwrite:
            raise ValueError(f"{out} already holds a finished run ({finished[0]}); pass --overwrite or choose another --out")
        started = out.is_dir() and (self.written_files() or self.sweep_runs())
        if started and not finished and not (resume or overwrite):
            raise ValueError(f"{out} holds an unfinished run; pass --resume to continue it or --overwrite to start over")
        if check_only:
            return
        if overwrite and out.is_dir():
            self.clear()
        out.mkdir(parents=True, exist_ok=True)
