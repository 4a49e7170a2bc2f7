"""Shared by every benchmark: its JSON record, headed by what ran, when and on what machine."""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path

import torch

from svdtrain.io import atomic_write_json


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}")  # fmt: skip


def write_results(path: str | Path, benchmark: str, fields: dict) -> None:
    """``fields`` written atomically to ``path`` after the benchmark's name, today's date and the machine."""
    atomic_write_json(path, {"benchmark": benchmark, "date": date.today().isoformat(), "machine": machine(), **fields})
