"""In-memory image datasets as uint8 arrays, with an atomic .npz cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svdtrain.io import atomic_write


@dataclass
class ImageArrays:
    """A split of an image dataset: images (N, H, W, C) uint8, labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        check_labels(self.labels, len(self.classes), "the data")

    def __len__(self) -> int:
        return len(self.labels)


def check_labels(labels: np.ndarray, classes: int, source: str) -> None:
    """Every label an integer class index in 0..classes-1: one out of range would otherwise fail
    inside the loss (an IndexError on CPU, a device assert on a GPU) in the middle of a run.

    Raises:
        ValueError: naming ``source``, the first bad label and its index.
    """
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{source} has labels of type {labels.dtype}, not integer class indices")
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise ValueError(f"{source} has {len(bad):,} label(s) outside the {classes} classes 0..{classes - 1}, "
                         f"the first {int(labels[bad[0]])} (example {bad[0]})")


def save_split_cache(path: Path, train: ImageArrays, test: ImageArrays) -> None:
    def write(f) -> None:
        np.savez(
            f, train_images=train.images, train_labels=train.labels,
            test_images=test.images, test_labels=test.labels, classes=np.array(train.classes),
        )  # fmt: skip

    atomic_write(path, write, mode="wb")


def load_split_cache(path: Path) -> tuple[ImageArrays, ImageArrays]:
    with np.load(path, allow_pickle=False) as z:
        classes = [str(c) for c in z["classes"]]
        return (
            ImageArrays(z["train_images"], z["train_labels"].astype(np.int64), classes),
            ImageArrays(z["test_images"], z["test_labels"].astype(np.int64), classes),
        )
