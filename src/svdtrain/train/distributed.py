"""Multi-process training on PyTorch's own engine: launched by torchrun, one process per
device, DistributedDataParallel, NCCL on GPUs and gloo on CPUs.

Each process holds the whole model (identical: same seed, and DDP broadcasts rank 0's
parameters when it wraps) and trains on its share of every global batch, so a run equals one
process at the same global batch up to the order of floating-point reductions. Regularizers
are computed by every process on its own identical parameters. Decisions that must be one
(the pruned ranks) are made on rank 0 and broadcast; only rank 0 writes files, and the others
wait for it at a barrier before reading them back.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from svdtrain.train.runtime import resolve_device
from svdtrain.train.sync_batchnorm import synchronized_batchnorm


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Distributed:
        """The process group torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (initialized
        here once: NCCL where CUDA is available, gloo otherwise); one process without them."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            # gloo for CPU tensors (and CPU models) even on GPU machines; a long timeout, since the
            # others wait at a barrier while rank 0 alone exports and reports
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend, timeout=timedelta(hours=2))
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    @classmethod
    def current(cls) -> Distributed:
        """The process group already initialized (by torchrun, Trainer, Lightning or the user), or
        one process; unlike :meth:`from_environment` it never initializes one."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
            return cls()
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def device(self, name: str) -> torch.device:
        """The device a run's ``device`` option names; ``auto``/``cuda`` mean this process's own
        GPU (cuda:LOCAL_RANK) in a distributed run."""
        if self.enabled and name in ("auto", "cuda") and torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return resolve_device(name)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (any picklable object)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_tensors(self, tensors: list[torch.Tensor]) -> None:
        """Rank 0's values of ``tensors`` on every process, in place."""
        if self.enabled:
            with torch.no_grad():
                for tensor in tensors:
                    dist.broadcast(tensor.data, src=0)

    def sum(self, sums: dict[str, float]) -> dict[str, float]:
        """Per-key sums over all processes (in float64); a process that saw no example has no keys."""
        if not self.enabled:
            return sums
        every = [None] * self.world_size
        dist.all_gather_object(every, sorted(sums))
        keys = sorted(set().union(*every))
        values = torch.tensor([float(sums.get(k, 0.0)) for k in keys], dtype=torch.float64)
        dist.all_reduce(values)
        return dict(zip(keys, values.tolist()))

    def min(self, value: int) -> int:
        """The smallest of every process's ``value`` (the first step any process diverged at,
        so all stop together and none waits forever)."""
        if not self.enabled:
            return value
        box = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(box, op=dist.ReduceOp.MIN)
        return int(box.item())

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in DistributedDataParallel (re-wrap after its parameters are replaced); as is
        in one process."""
        if not self.enabled:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def synchronized_batchnorm(self, model: nn.Module, device: torch.device) -> AbstractContextManager:
        """A block in which ``model``'s BatchNorm normalizes over the global batch (GPU or CPU);
        nothing in one process."""
        return synchronized_batchnorm(model, device) if self.enabled else nullcontext(model)

    def shard(self, batches: Any, *, every_example: bool = False) -> Any:
        """``batches`` with each global batch cut to this process's share; as is in one process.
        ``every_example`` (evaluation) keeps batches too small to give every process a part:
        some parts are then empty."""
        return ShardedBatches(batches, self.rank, self.world_size, every_example) if self.enabled else batches


def unwrapped(model: nn.Module) -> nn.Module:
    """The model inside its torch.compile and DistributedDataParallel wrappers (or itself)."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


class ShardedBatches:
    """Each global batch of ``batches`` cut into ``world_size`` near-equal parts along the batch
    axis; this process yields part ``rank``. Every process draws the same global batches (same
    seed and epoch), so together they see what one process would: exactly so when the batch
    size divides by the number of processes (DDP averages the parts' mean losses). A last
    batch with fewer examples than processes is skipped by all of them."""

    def __init__(self, batches: Any, rank: int, world_size: int, every_example: bool = False) -> None:
        self.inner, self.rank, self.world_size, self.every_example = batches, rank, world_size, every_example

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._cut(iter(self.inner))

    def batches(self, augment: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._cut(self.inner.batches(augment))

    def _cut(self, batches: Iterator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for inputs, targets in batches:
            if len(inputs) < self.world_size and not self.every_example:  # too small to give every process a part
                continue
            yield inputs.tensor_split(self.world_size)[self.rank], targets.tensor_split(self.world_size)[self.rank]
