"""Progress: a tqdm bar per epoch on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], total: int, description: str) -> Iterable[T]:
    """Wrap ``items`` in a tqdm bar when stderr is a terminal and tqdm is installed."""
    if not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc=description, leave=False, unit="batch", dynamic_ncols=True)


def format_eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
