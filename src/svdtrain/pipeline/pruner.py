"""Pruning decisions of a run: which rule, which ranks, activation-aware or not, all at once
(the prune stage) or gradually during SVD training, with BatchNorm re-estimated after each cut."""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn

from svdtrain.surgery import (
    Calibration, Energy, MacsBudget, RankPolicy, Ranks, Speedup, Threshold, calibrate, factored_weights,
    fastest_multiple, prune,
)  # fmt: skip
from svdtrain.linalg import importance_order
from svdtrain.surgery.macs import Inputs
from svdtrain.surgery.policies import gradual_budget
from svdtrain.surgery.ranks import kept_energy
from svdtrain.train.distributed import Distributed
from svdtrain.surgery.budget import macs_per_rank
from svdtrain.pipeline.config import RunConfig
from svdtrain.pipeline.config.sections import PruneConfig
from svdtrain.train.loop import recalibrate_batchnorm
from svdtrain.pipeline.run_data import Data


SPEED_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def speed_timing(p: PruneConfig) -> dict:
    """Where and as what a speed target times: ``device``, ``dtype`` and ``compiled`` for
    Speedup, compact and fastest_multiple."""
    return {"device": p.speed_device, "dtype": SPEED_DTYPES[p.speed_dtype], "compiled": p.speed_compiled}


def policy_from_config(
    p: PruneConfig, *, example: Inputs, speed_example: Inputs, baseline_macs: int, max_macs: int | None = None,
    multiple: int | None = None,
) -> RankPolicy:
    """The one rank policy the prune section sets (its validation refuses two targets, or a
    target and a threshold): target_speedup (timed on a copy on ``speed_device`` in
    ``speed_dtype``, at ``speed_example``'s batch size), target_reduction (at most
    ``baseline_macs`` / target_reduction MACs on ``example``, or ``max_macs`` for a gradual cut
    on the way there), threshold, else energy (the fallback,
    so its default never counts as a second rule). ``multiple``: the rank multiple where the
    section leaves it to measurement (``rank_multiple`` 0; :meth:`Pruner.multiple`)."""
    multiple = multiple or p.rank_multiple
    if p.target_speedup:
        return Speedup(p.target_speedup, speed_example, multiple=multiple, **speed_timing(p))
    if p.target_reduction:
        budget = max_macs if max_macs is not None else int(baseline_macs / p.target_reduction)
        multiple = multiple if p.rank_allocation == "greedy" else 1  # the energy rule has no grid
        return MacsBudget(example, max_macs=budget, allocation=p.rank_allocation, multiple=multiple)
    if p.threshold > 0:
        return Threshold(p.threshold)
    return Energy(p.energy)


class Pruner:
    """The ranks are chosen on one process (rank 0 of a distributed run) and applied by all."""

    def __init__(self, config: RunConfig, data: Data, device: torch.device, baseline_macs: int, *,
                 speed_example: torch.Tensor, log: Callable[[str], None],
                 dist: Distributed = Distributed()) -> None:  # fmt: skip
        self.config, self.data, self.device, self.baseline_macs = config, data, device, baseline_macs
        self.speed_example, self.log, self.dist = speed_example, log, dist
        self._measured_multiple: int | None = None

    def policy(self, model: nn.Module, max_macs: int | None = None) -> RankPolicy:
        """The run's rank policy (:func:`policy_from_config`) for ``model``; ``max_macs``: a
        gradual cut's budget."""
        return policy_from_config(self.config.prune, example=self.data.example, speed_example=self.speed_example,
                                  baseline_macs=self.baseline_macs, max_macs=max_macs,
                                  multiple=self.multiple(model))  # fmt: skip

    def multiple(self, model: nn.Module) -> int:
        """The rank multiple: the section's, or with ``rank_multiple`` 0 and a target, the one of
        1, 8, 16, 32, 64 whose compact model measures fastest at the target (on speed_device in
        speed_dtype, at speed_batch_size), measured once by rank 0 at the first cut; else 1."""
        p = self.config.prune
        if p.rank_multiple or not (p.target_reduction or p.target_speedup):
            return p.rank_multiple or 1
        if self._measured_multiple is None:
            measured = self._measure_multiple(model) if self.dist.is_main else None
            self._measured_multiple = self.dist.broadcast(measured)
        return self._measured_multiple

    def _measure_multiple(self, model: nn.Module) -> int:
        target = partial(policy_from_config, self.config.prune, example=self.data.example,
                         speed_example=self.speed_example, baseline_macs=self.baseline_macs)  # fmt: skip
        best, seconds = fastest_multiple(model, self.speed_example.to(self.device),
                                         lambda m: target(multiple=m), **speed_timing(self.config.prune))  # fmt: skip
        times = ", ".join(f"{m}: {1e3 * s:.2f} ms" for m, s in seconds.items())
        self.log(f"prune: rank multiple {best} measured fastest ({times})")
        return best

    def prune(self, model: nn.Module) -> dict[str, int]:
        """Prune ``model`` by the run's rank policy; returns the kept ranks."""
        return self._apply(model, self.policy(model), self.calibration(model))

    def prune_to(self, model: nn.Module, budget: int, cut: int = 0) -> dict[str, int]:
        """Prune ``model`` to at most ``budget`` MACs by the configured rank allocation."""
        return self._apply(model, self.policy(model, max_macs=budget), self.calibration(model, cut))

    def _apply(self, model: nn.Module, policy: RankPolicy, calibration: Calibration | None) -> dict[str, int]:
        ranks = self.dist.broadcast(policy.ranks(model, calibration) if self.dist.is_main else None)
        return prune(model, Ranks(ranks), calibration=calibration)

    def gradual_step(self, model: nn.Module, epochs_done: int) -> bool:
        """After SVD-training epoch ``epochs_done``: prune to (1/R)^(done/N) of the dense MACs, N
        being ``gradual_cuts`` (0: every SVD-training epoch), so the cut grows by the same factor
        each epoch and reaches R after the N-th; later epochs train at those ranks.
        Returns whether any rank changed."""
        p, t = self.config.prune, self.config.svd_train
        cuts = t.gradual_cuts or t.epochs
        if epochs_done > cuts:
            return False
        budget = gradual_budget(self.baseline_macs, p.target_reduction, epochs_done, cuts)
        before = {id(p) for p in model.parameters()}
        ranks = self.prune_to(model, budget, cut=epochs_done)
        self.recalibrate_batchnorm(model, cut=epochs_done)
        self.log(f"svd_train: pruned to {budget:,} MACs ({sum(ranks.values())} singular values kept)")
        return {id(p) for p in model.parameters()} != before

    def target_energy(self, model: nn.Module) -> dict[str, float]:
        """``{"target_energy": share}``: the share of all factored weights' sum(s^2) that a cut to
        the MACs target by |s| would keep now; what SVD training should raise, epoch by epoch.
        Empty without a MACs target (a speed target would time the model every epoch). With
        ``rank_multiple`` 0 it uses the measured multiple once the first cut has measured it, and
        1 before: measuring here would move that measurement off the first cut."""
        p = self.config.prune
        if not p.target_reduction:
            return {}
        policy = policy_from_config(p, example=self.data.example, speed_example=self.speed_example,
                                    baseline_macs=self.baseline_macs,
                                    multiple=p.rank_multiple or self._measured_multiple or 1)  # fmt: skip
        return {"target_energy": kept_energy(model, policy.ranks(model))}

    def tails(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """{weight: bool mask over s} of the singular values that pruning to the MACs target
        would drop now (by the run's rank policy, by |s|)."""
        ranks = self.policy(model).ranks(model)
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
