"""``svdtrain probe``: how much of the starting model's accuracy the activation-aware cut to a
run's MACs target keeps, BatchNorm re-estimated, on training images (never the test split: a
recipe must not be picked on what the run is judged on), and the recipe that points to.

The cheaper that cut, the more of it fine-tuning wins back; measured, SVD training beat
truncation only where the cut lost most (EVIDENCE below)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from svdtrain.models import build_model
from svdtrain.surgery import count_macs, decompose
from svdtrain.tasks import task_named
from svdtrain.train.checkpoint import load_matching, read_state_dict
from svdtrain.pipeline.config import OPTIONS, RunConfig
from svdtrain.train.loop import evaluate
from svdtrain.pipeline.engine import build_engine, cut_batches
from svdtrain.pipeline.run_data import load_data, start_checkpoint

PROBE_BATCHES = 20  # training batches the dense and the cut model are scored on
_PROBE_EPOCH = 2_000_000  # their order: apart from the calibration's (engine.CUT_EPOCHS)


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
    the cut the EVIDENCE line was drawn on), and score it against the dense model on the same images.

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
    is 0.63 for the adapted ResNet-20 of BENCHMARKS.md section 4.2.
    """
    if config.task != "classification":
        raise ValueError(f"the cut probe compares accuracies: it takes classification runs, not task {config.task}")
    if not (config.start.checkpoint and config.prune.target_reduction):
        raise ValueError("the cut probe needs a starting checkpoint and a MACs target (target_reduction)")
    recalibration = config.prune.bn_recalibration_batches or OPTIONS["bn_recalibration_batches"].default
    config = config.updated(calibration="whiten", bn_recalibration_batches=recalibration)
    device = torch.device(device)
    checkpoint = start_checkpoint(config)  # before the data: a missing file fails in a second, not a decode
    data = load_data(config, device)
    dense = build_model(config.model, data.num_classes, config.data.block_length)
    load_matching(dense, read_state_dict(checkpoint), str(checkpoint))
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
    calibration, batchnorm = cut_batches(config, data, 0)
    build_engine(config, data, model, dense_macs).prune(batches=calibration, bn_batches=batchnorm)
    images = sum(len(labels) for _, labels in held)
    return CutProbe(before, evaluate(model, held, device, task), images, data.num_classes)


# Where SVD training (the budget recipe) and activation-aware truncation were compared at the same
# MACs and epochs from the same adapted model (BENCHMARKS.md section 4; points in
# benchmarks/results/cut_probe_points.json): the share of the starting accuracy the cut kept on
# training images, and the budget recipe's margin over truncation in test points (+: SVD training won).
EVIDENCE = (
    ("ResNet-20 spatial-wise 5x, 1 seed", 0.544, +1.14),
    ("ResNet-20 channel-wise 3x, 2 seeds", 0.628, +0.83),
    ("ResNet-56 channel-wise 3x, 1 seed", 0.757, -0.62),
    ("ResNet-20 spatial-wise 3x, 2 seeds", 0.808, -0.29),
    ("ResNet-20 channel-wise 2x, 2 seeds", 0.832, -0.20),
    ("ResNet-20 spatial-wise 2x, 1 seed", 0.940, -1.01),
)
# SVD training won at every measured point under this share, and lost at every one over it.
BUDGET_BELOW_KEPT = 0.70
LIMITS = ("six points, all CIFAR-10 ResNets on 2-core CPU schedules (4 SVD + 5 fine-tuning epochs), the line "
          "drawn through the points it was fitted on; an out-of-sample check reported in issue 22 (another ResNet "
          "depth, channel-wise 3x, two seeds, GPU; not recorded in BENCHMARKS.md) kept 66.5% and the budget recipe "
          "ended level with truncation (+0.08), not ahead. Near the line, run both (BENCHMARKS.md section 4.1)")


def recommendation(probe: CutProbe) -> str:
    """The recipe the measured cut points to, and why, in a line; none for a starting model near chance."""
    if not probe.informative:
        return (f"none: the starting model scores {probe.dense:.4f}, near chance for {probe.classes} classes, so the "
                "cut's share means nothing")  # fmt: skip
    if probe.kept < BUDGET_BELOW_KEPT:
        return (f"--recipe budget: the cut keeps {probe.kept:.1%}, under {BUDGET_BELOW_KEPT:.0%}, where SVD training "
                "won every measured comparison")  # fmt: skip
    return (f"--recipe truncation: the cut keeps {probe.kept:.1%}, at or over {BUDGET_BELOW_KEPT:.0%}, where "
            "activation-aware truncation won every measured comparison")  # fmt: skip
