"""scikit-learn's bundled 8x8 digits (1,797 images): the demo's data, no download needed."""

from __future__ import annotations

from typing import Iterator

import torch


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test); images (N, 1, 8, 8) scaled to [0, 1], stratified split."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as missing:
        raise ImportError("the digits data needs scikit-learn: pip install 'svdtrain[demo]'") from missing
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    as_images = lambda a: torch.tensor(a, dtype=torch.float32).unsqueeze(1) / 16.0  # noqa: E731
    as_labels = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return as_images(x_train), as_labels(y_train), as_images(x_test), as_labels(y_test)


def tensor_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of an in-memory dataset; shuffled when a generator is given."""
    order = torch.randperm(len(x), generator=generator) if generator is not None else torch.arange(len(x))
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]
