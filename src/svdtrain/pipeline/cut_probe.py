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
from svdtrain.pipeline.config import OPTIONS, Measure, RunConfig
from svdtrain.train.distributed import Distributed
from svdtrain.train.loop import evaluate
from svdtrain.pipeline.pruner import Pruner
from svdtrain.pipeline.run_data import load_data
from svdtrain.train.runtime import denormals_flushed

PROBE_BATCHES = 20  # training batches the dense and the cut model are scored on
_PROBE_EPOCH = 2_000_000  # their order: apart from the calibration's (Pruner._batches)


@dataclass(frozen=True)
class CutProbe:
    dense: float  # the starting model's accuracy on the probe's images
    cut: float  # after the activation-aware cut to the target, BatchNorm re-estimated
    images: int
    classes: int

    @property
    def kept(self) -> float:
        """The fraction of the dense accuracy the cut keeps (0 where the dense model scores 0)."""
        return self.cut / self.dense if self.dense > 0 else 0.0

    @property
    def informative(self) -> bool:
        """Whether the starting model is well above chance (twice it), so that ``kept`` means something."""
        return self.dense >= 2 / self.classes


def probe_cut(config: RunConfig, device: torch.device | str = "cpu", batches: int = PROBE_BATCHES, *,
              split: str = "train") -> CutProbe:  # fmt: skip
    """Cut ``config``'s starting checkpoint, decomposed by its scheme, to its MACs target as the
    prune stage does (greedy ranks, always with whitening calibration and BatchNorm re-estimated:
    the cut the recipe line was drawn on), and score it against the dense model on the same images.

    Args:
        config: a run with ``start.checkpoint`` and ``prune.target_reduction``.
        device: where to cut and score.
        batches: how many training batches to score on (unaugmented, in a fixed order).
        split: ``"train"``, or ``"test"`` to score on the whole test split (benchmarks' reference).
    Returns:
        The dense and cut accuracies, the images scored and the number of classes.
    Raises:
        ValueError: without a checkpoint or a MACs target; FileNotFoundError: no such checkpoint.

    ``probe_cut(resolve_config("cpu-resnet20-channel-hoyer", overrides={"target_reduction": 3})).kept``
    is 0.63 for the adapted ResNet-20 of BENCHMARKS.md section 11.
    """
    if not (config.start.checkpoint and config.prune.target_reduction):
        raise ValueError("the cut probe needs a starting checkpoint and a MACs target (target_reduction)")
    recalibration = config.prune.bn_recalibration_batches or OPTIONS["bn_recalibration_batches"].default
    config = config.updated(calibration="whiten", bn_recalibration_batches=recalibration)
    device = torch.device(device)
    data = load_data(config, device)
    dense = build_model(config.model, data.num_classes, config.data.block_length)
    load_matching(dense, read_state_dict(config.start.checkpoint), config.start.checkpoint)
    dense = dense.to(device)
    dense_macs = count_macs(dense, data.example)
    task = task_named(config.task)
    if split == "test":
        held = list(data.test)
    else:
        data.train.set_epoch(_PROBE_EPOCH)
        held = list(itertools.islice(data.train.batches(augment=False), batches))
    before = evaluate(dense, held, device, task)
    model = decompose(dense, scheme=config.start.scheme, init="svd")
    pruner = Pruner(config, data, device, dense_macs, speed_example=data.example.cpu(), log=lambda line: None)
    pruner.prune(model)
    pruner.recalibrate_batchnorm(model)
    images = sum(len(labels) for _, labels in held)
    return CutProbe(before, evaluate(model, held, device, task), images, data.num_classes)


def measured_by_probe(log: Callable[[str], None] = print, dist: Distributed = Distributed()) -> Measure:
    """recipe auto's ``measure``: the kept fraction of :func:`probe_cut` (None for a starting model
    near chance), measured and logged on rank 0 alone; every process gets its answer or its error,
    so a distributed run picks one recipe, or stops everywhere with the same message."""

    def measure(config: RunConfig) -> float | None:
        outcome: float | None | Exception = None
        if dist.is_main:
            log(f"recipe auto: measuring the activation-aware cut to {config.prune.target_reduction:g}x fewer MACs "
                "before training ...")  # fmt: skip
            try:
                with denormals_flushed(config.run.flush_denormals):  # as the run's stages: before any parallel op
                    outcome = _kept(probe_cut(config, dist.device(config.run.device)), log)
            except Exception as error:  # every process raises it below
                outcome = error
        outcome = dist.broadcast(outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return measure


def _kept(probe: CutProbe, log: Callable[[str], None]) -> float | None:
    if not probe.informative:
        log(f"recipe auto: the starting model scores {probe.dense:.4f} on {probe.images:,} training images, near "
            f"chance for {probe.classes} classes: the cut's share means nothing, so auto decides by scheme and factor")
        return None
    log(f"recipe auto: the cut keeps {probe.kept:.1%} of the starting model's accuracy ({probe.dense:.4f} -> "
        f"{probe.cut:.4f} on {probe.images:,} training images, BatchNorm re-estimated)")  # fmt: skip
    return probe.kept
