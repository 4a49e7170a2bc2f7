"""What recipe ``auto`` measures before a run trains: how much of the starting model's accuracy
the activation-aware cut to the run's MACs target keeps, BatchNorm re-estimated, on training
images (never the test split: the recipe must not be picked on what the run is judged on).

The cheaper that cut, the more of it fine-tuning wins back; measured, SVD training beat
truncation only where the cut lost most (recipe.py says where the line is and why)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import torch

from svdtrain.models import build_model
from svdtrain.surgery import count_macs, decompose
from svdtrain.tasks import task_named
from svdtrain.train.checkpoint import load_matching, read_state_dict
from svdtrain.train.config import Measure, RunConfig
from svdtrain.train.distributed import Distributed
from svdtrain.train.loop import evaluate
from svdtrain.train.pruner import Pruner
from svdtrain.train.run_data import load_data

PROBE_BATCHES = 20  # training batches the dense and the cut model are scored on
_PROBE_EPOCH = 2_000_000  # their order: apart from the calibration's (Pruner._batches)


@dataclass(frozen=True)
class CutProbe:
    dense: float  # the starting model's accuracy on the probe's training images
    cut: float  # after the activation-aware cut to the target, BatchNorm re-estimated
    images: int

    @property
    def kept(self) -> float:
        """The fraction of the dense accuracy the cut keeps (0 where the dense model scores 0)."""
        return self.cut / self.dense if self.dense > 0 else 0.0


def probe_cut(config: RunConfig, device: torch.device | str = "cpu", batches: int = PROBE_BATCHES, *,
              split: str = "train") -> CutProbe:  # fmt: skip
    """Cut ``config``'s starting checkpoint (decomposed by its scheme) to its MACs target as its
    prune stage would, and score it against the dense model on the same ``batches`` training
    batches (``split="test"``: on the whole test split instead, for benchmarks' reference)."""
    if not (config.start.checkpoint and config.prune.target_reduction):
        raise ValueError("the cut probe needs a starting checkpoint and a MACs target (target_reduction)")
    device = torch.device(device)
    data = load_data(config, device)
    dense = build_model(config.model, data.num_classes, config.data.block_length)
    load_matching(dense, read_state_dict(config.start.checkpoint), config.start.checkpoint)
    dense = dense.to(device)
    task = task_named(config.task)
    if split == "test":
        held = list(data.test)
    else:
        data.train.set_epoch(_PROBE_EPOCH)
        held = list(itertools.islice(data.train.batches(augment=False), batches))
    before = evaluate(dense, held, device, task)
    model = decompose(dense, scheme=config.start.scheme, init="svd")
    pruner = Pruner(config, data, device, count_macs(dense, data.example), speed_example=data.example.cpu(),
                    log=lambda line: None)  # fmt: skip
    pruner.prune(model)
    pruner.recalibrate_batchnorm(model)
    return CutProbe(before, evaluate(model, held, device, task), sum(len(labels) for _, labels in held))


def measured_by_probe(log: Callable[[str], None] = print, dist: Distributed = Distributed()) -> Measure:
    """recipe auto's ``measure``: the kept fraction of :func:`probe_cut`, measured on rank 0
    alone (every process of a distributed run then picks the same recipe) and logged."""

    def measure(config: RunConfig) -> float:
        kept = None
        if dist.is_main:
            probe = probe_cut(config, dist.device(config.run.device))
            kept = probe.kept
            log(f"recipe auto: the activation-aware cut to {config.prune.target_reduction:g}x fewer MACs keeps "
                f"{kept:.1%} of the starting model's accuracy ({probe.dense:.4f} -> {probe.cut:.4f} on "
                f"{probe.images:,} training images, BatchNorm re-estimated)")  # fmt: skip
        return dist.broadcast(kept)

    return measure
