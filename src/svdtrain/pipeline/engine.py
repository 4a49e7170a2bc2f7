"""The pipeline's SVDTraining: the one engine, built from the run's config and data. What is the
pipeline's own is which batches a cut reads: an order fixed by the cut alone, so a stage redone
on resume sees the same ones."""

from __future__ import annotations

from typing import Callable, Iterator

from torch import nn

from svdtrain.pipeline.config import RunConfig
from svdtrain.pipeline.run_data import Data
from svdtrain.train.distributed import Distributed
from svdtrain.train.svd_training import SVDTraining

CUT_EPOCHS = 1_000_000  # the data order of the n-th cut: set_epoch(CUT_EPOCHS + n), apart from training's


def build_engine(config: RunConfig, data: Data, model: nn.Module, baseline_macs: int, *,
                 log: Callable[[str], None] = lambda line: None, dist: Distributed = Distributed(),
                 teacher: nn.Module | None = None, measured_multiple: int | None = None) -> SVDTraining:  # fmt: skip
    """SVDTraining of the already factored ``model`` under the run's svd_train and prune sections
    (``config.svd_training``); ``measured_multiple``: a rank multiple an earlier stage measured."""
    engine = SVDTraining(model, config.svd_training, example=data.example, teacher=teacher,
                         baseline_macs=baseline_macs, log=log, dist=dist)  # fmt: skip  (speed_example: its own)
    engine.measured_multiple = measured_multiple
    return engine


def cut_batches(config: RunConfig, data: Data, cut: int) -> tuple[Iterator, Iterator]:
    """The batches the ``cut``-th cut (0: the prune stage) reads: unaugmented for the calibration,
    augmented (where the run augments and ``bn_recalibration_augment``) for BatchNorm."""

    def batches(augment: bool) -> Iterator:
        data.train.set_epoch(CUT_EPOCHS + cut)
        return data.train.batches(augment=augment)

    return batches(False), _Lazy(lambda: batches(config.data.augment and config.prune.bn_recalibration_augment))


class _Lazy:
    """An iterable made when first read, so the calibration's order is set before BatchNorm's."""

    def __init__(self, make: Callable[[], Iterator]) -> None:
        self.make = make

    def __iter__(self) -> Iterator:
        return iter(self.make())
