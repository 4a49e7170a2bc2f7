"""Mini-batches of an in-memory uint8 dataset: shuffled, augmented and normalized as whole
batches on the target device, so the data path never starves 2 CPU cores or a GPU."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from svdtrain.data.arrays import ImageArrays


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, per image of (N, C, H, W)."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)  # (N, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator).to(images.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    rows = dy + torch.arange(h, device=images.device)  # (N, H)
    cols = dx + torch.arange(w, device=images.device)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=images.device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return crops.permute(0, 3, 1, 2)


class TensorBatches:
    """Re-iterable batches of ``arrays``; epoch ``e`` always yields the same batches for a seed."""

    def __init__(
        self,
        arrays: ImageArrays,
        batch_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        keep = slice(None)
        if limit is not None and limit < len(arrays.labels):
            # A fixed random subset, not the first N: image folders are stored class by class,
            # so the first N images could hold one or two classes.
            keep = np.sort(np.random.default_rng(1234).permutation(len(arrays.labels))[:limit])
        images = torch.from_numpy(arrays.images[keep])  # (N, H, W, C) uint8
        self.images = images.permute(0, 3, 1, 2).contiguous().to(device)  # (N, C, H, W)
        self.labels = torch.from_numpy(arrays.labels[keep]).to(device)
        channels = self.images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std (--mean, --std) need {channels} value(s) each for these {channels}-channel "
                             f"images, got {len(mean)} and {len(std)}")
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.batch_size, self.shuffle, self.augment, self.seed = batch_size, shuffle, augment, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(self.augment)

    def batches(self, augment: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's batches, augmented or not (e.g. plain ones to calibrate BatchNorm)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx].float()
            if augment:
                x = random_crop_flip(x, padding=4, generator=generator)
            yield (x - self.mean) / self.std, self.labels[idx]
