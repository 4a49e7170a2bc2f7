"""Next-token-prediction batches of a 1-D token tensor, gathered as whole batches on the device."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from svdtrain.linalg import check_positive_int


class TokenBatches:
    """Re-iterable ``(inputs, targets)`` batches, both ``(B, length)`` long, targets = inputs shifted by one.

    Block ``i`` is ``tokens[i * length : i * length + length + 1]``: blocks of ``length + 1`` tokens
    taken with stride ``length``, so every token after the first is a target exactly once; a tail
    shorter than one block is dropped, the last partial batch is kept. With ``shuffle``, the block
    order is a fixed permutation per (``seed``, epoch), as in the image ``TensorBatches``; ``limit``
    keeps a fixed random subset of that many blocks (in text order).
    Each batch restarts any recurrent state: blocks are independent, not streams carried across batches.

    Args:
        tokens: (N,) integer token ids.
        batch_size: blocks per batch.
        length: tokens per input row (the model's context length T).
        name: what the tokens are (e.g. ``"valid"``), for error messages.

    Raises:
        ValueError: ``tokens`` not 1-D integer, ``batch_size``/``length``/``limit`` < 1, or fewer
            than ``length + 1`` tokens (naming ``name``).

    Example:
        >>> batches = TokenBatches(torch.arange(10), 2, length=3)
        >>> [x.tolist() for x, _ in batches]
        [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8]]]
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        batch_size: int,
        *,
        length: int,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        limit: int | None = None,
        name: str = "tokens",
    ) -> None:
        check_positive_int("batch_size", batch_size)
        check_positive_int("length", length)
        if limit is not None:
            check_positive_int("limit", limit)
        integer = isinstance(tokens, torch.Tensor) and not (tokens.is_floating_point() or tokens.is_complex())
        if not integer or tokens.ndim != 1 or tokens.dtype == torch.bool:
            got = f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"{name} must be a 1-D integer token tensor, got {got}")
        if len(tokens) < length + 1:
            raise ValueError(
                f"{name} split has {len(tokens)} tokens, fewer than one block of length + 1 = {length + 1}"
            )
        count = (len(tokens) - 1) // length
        starts = torch.arange(count) * length  # (count,)
        if limit is not None and limit < count:
            # A fixed random subset, not the first N blocks: those would all come from the text's start.
            starts = starts[np.sort(np.random.default_rng(1234).permutation(count)[:limit])]
        self.tokens = tokens.to(device=device, dtype=torch.long)
        self.starts = starts.to(self.tokens.device)
        self.offsets = torch.arange(length, device=self.tokens.device)  # (T,)
        self.batch_size, self.length, self.shuffle, self.seed, self.name = batch_size, length, shuffle, seed, name
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(False)

    def batches(self, augment: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's batches; ``augment`` is accepted and ignored (text has no augmentation),
        so a training loop can call image and token batches alike."""
        n = len(self.starts)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=generator).to(self.starts.device)
        else:
            order = torch.arange(n, device=self.starts.device)
        for first in range(0, n, self.batch_size):
            rows = self.starts[order[first : first + self.batch_size]][:, None] + self.offsets  # (B, T)
            yield self.tokens[rows], self.tokens[rows + 1]  # inputs (B, T), targets (B, T)
