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

    def __len__(self) -> int:
        return len(self.labels)


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
