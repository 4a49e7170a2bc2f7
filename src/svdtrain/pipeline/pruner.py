"""Pruning decisions of a run: which rule, which ranks, activation-aware or not, all at once
(the prune stage) or gradually during SVD training, with BatchNorm re-estimated after each cut."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from svdtrain.surgery import (
    Calibration, calibrate, copy_model, energy_for_macs, factored_weights, prune, ranks_for_macs, ranks_for_speedup,
)  # fmt: skip
from svdtrain.linalg import energy_rank, importance_order, threshold_rank
from svdtrain.surgery.prune import spectra
from svdtrain.train.distributed import Distributed
from svdtrain.surgery.budget import macs_per_rank
from svdtrain.pipeline.config import RunConfig
from svdtrain.train.loop import recalibrate_batchnorm
from svdtrain.pipeline.run_data import Data


class Pruner:
    """The ranks are chosen on one process (rank 0 of a distributed run) and applied by all."""

    def __init__(self, config: RunConfig, data: Data, device: torch.device, baseline_macs: int, *,
                 speed_example: torch.Tensor, log: Callable[[str], None],
                 dist: Distributed = Distributed()) -> None:  # fmt: skip
        self.config, self.data, self.device, self.baseline_macs = config, data, device, baseline_macs
        self.speed_example, self.log, self.dist = speed_example, log, dist

    def prune(self, model: nn.Module) -> dict[str, int]:
        """Prune ``model`` by the first rule the prune section sets; returns the kept ranks."""
        p = self.config.prune
        if p.target_reduction:
            return self.prune_to(model, int(self.baseline_macs / p.target_reduction))
        calibration = self.calibration(model)
        return self._apply(model, lambda: self._ranks_by_rule(model, calibration), calibration)

    def prune_to(self, model: nn.Module, budget: int, cut: int = 0) -> dict[str, int]:
        """Prune ``model`` to at most ``budget`` MACs by the configured rank allocation."""
        calibration = self.calibration(model, cut)
        return self._apply(model, lambda: self._ranks_for_budget(model, budget, calibration), calibration)

    def _apply(self, model: nn.Module, choose: Callable[[], dict[str, int]], calibration: Calibration | None):
        ranks = self.dist.broadcast(choose() if self.dist.is_main else None)
        return prune(model, rank=ranks, calibration=calibration)

    def _ranks_by_rule(self, model: nn.Module, calibration: Calibration | None) -> dict[str, int]:
        p = self.config.prune
        if p.target_speedup:
            timing_model = copy_model(model).cpu().eval()  # timed where it will be deployed: this CPU
            return ranks_for_speedup(timing_model, self.speed_example, p.target_speedup, multiple=p.rank_multiple)
        if p.threshold > 0:
            return {name: threshold_rank(layer.s, p.threshold) for name, layer in factored_weights(model).items()}
        return {name: energy_rank(values, p.energy) for name, values in spectra(model, calibration).items()}

    def _ranks_for_budget(self, model: nn.Module, budget: int, calibration: Calibration | None) -> dict[str, int]:
        p = self.config.prune
        if p.rank_allocation == "greedy":
            return ranks_for_macs(model, self.data.example, budget, multiple=p.rank_multiple, calibration=calibration)
        energy = energy_for_macs(model, self.data.example, budget, calibration=calibration)
        self.log(f"prune: energy {energy:.3g} meets {budget:,} MACs")
        return {name: energy_rank(values, energy) for name, values in spectra(model, calibration).items()}

    def gradual_step(self, model: nn.Module, epochs_done: int) -> bool:
        """After SVD-training epoch ``epochs_done`` of E: prune to (1/R)^(done/E) of the dense
        MACs, so the cut grows by the same factor each epoch and reaches R at the last.
        Returns whether any rank changed."""
        p, epochs = self.config.prune, self.config.svd_train.epochs
        budget = int(self.baseline_macs * p.target_reduction ** (-epochs_done / epochs))
        before = {id(p) for p in model.parameters()}
        ranks = self.prune_to(model, budget, cut=epochs_done)
        self.recalibrate_batchnorm(model, cut=epochs_done)
        self.log(f"svd_train: pruned to {budget:,} MACs ({sum(ranks.values())} singular values kept)")
        return {id(p) for p in model.parameters()} != before

    def tails(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """{weight: bool mask over s} of the singular values that pruning to the MACs target
        would drop now (by the configured allocation, by |s|)."""
        p = self.config.prune
        budget = int(self.baseline_macs / p.target_reduction)
        if p.rank_allocation == "greedy":
            ranks = ranks_for_macs(model, self.data.example, budget, multiple=p.rank_multiple)
        else:
            energy = energy_for_macs(model, self.data.example, budget)
            ranks = {name: energy_rank(layer.s, energy) for name, layer in factored_weights(model).items()}
        masks = {}
        for name, layer in factored_weights(model).items():
            mask = torch.ones_like(layer.s, dtype=torch.bool)
            mask[importance_order(layer.s)[: ranks[name]]] = False
            if mask.any():
                masks[name] = mask
        return masks

    def macs_scales(self, model: nn.Module) -> dict[str, float]:
        """Each weight's MACs per singular value over their mean (1 on average): sparsity
        weights that pull where a MACs budget is spent."""
        costs = macs_per_rank(model, self.data.example)
        paying = [c for c in costs.values() if c > 0]
        mean = sum(paying) / len(paying) if paying else 1.0
        return {name: cost / mean for name, cost in costs.items()}

    def _batches(self, cut: int, augment: bool):
        """Training batches in an order fixed by the cut alone (the n-th of a gradual run, 0 for
        the prune stage), so a stage redone on resume sees the same ones."""
        self.data.train.set_epoch(1_000_000 + cut)
        return self.data.train.batches(augment=augment)

    def calibration(self, model: nn.Module, cut: int = 0) -> Calibration | None:
        p = self.config.prune
        if p.calibration == "none":
            return None
        batches = self._batches(cut, augment=False)
        calibration = calibrate(model, batches, max_batches=p.calibration_batches, method=p.calibration)
        self.log(f"prune: {p.calibration} calibration of {len(calibration.stats)} of "
                 f"{len(factored_weights(model))} weights on {calibration.batches} batches")  # fmt: skip
        return calibration

    def recalibrates(self, model: nn.Module) -> bool:
        """Whether pruning re-estimates BatchNorm statistics: the model has some, and it is on."""
        has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        return bool(self.config.prune.bn_recalibration_batches) and has_batchnorm

    def recalibrate_batchnorm(self, model: nn.Module, cut: int = 0) -> None:
        """Re-estimate BatchNorm statistics where :meth:`recalibrates`; otherwise nothing."""
        p, d = self.config.prune, self.config.data
        if not self.recalibrates(model):
            return
        batches = self._batches(cut, augment=d.augment and p.bn_recalibration_augment)
        recalibrate_batchnorm(model, batches, p.bn_recalibration_batches, self.device)
