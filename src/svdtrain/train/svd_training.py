"""SVDTraining: the method's state for any training loop (your own, Hugging Face Trainer,
Lightning): the regularizers' term for each step, cuts towards a target, the compact model."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Iterable

import torch
from torch import nn

from svdtrain.surgery import (
    Energy, MacsBudget, RankPolicy, Threshold, calibrate, compact, count_macs, decompose, factored_weights, prune,
)  # fmt: skip
from svdtrain.surgery.calibrate import call_on_batch
from svdtrain.surgery.decompose import FilterFn
from svdtrain.surgery.macs import Inputs
from svdtrain.surgery.policies import gradual_budget
from svdtrain.bounds import brief
from svdtrain.linalg import SCHEMES
from svdtrain.tasks.base import Task, to_device
from svdtrain.train.checkpoint import ranks_of, shrink_to
from svdtrain.train.loop import recalibrate_batchnorm
from svdtrain.train.optimizer import optimizer_follows, param_groups
from svdtrain.train.regularization import Regularization, RegularizationTerms
from svdtrain.train.svd_config import SVDTrainingConfig


class SVDTraining:
    """SVD training of ``model`` in your own loop: add :meth:`loss` to the task loss each step,
    :meth:`cut` at epoch ends when cutting gradually, :meth:`prune` once, fine-tune if you like,
    then :meth:`finish` for the compact model.

    ``model`` is decomposed in place (unless it already has factored weights; ``filter_fn``
    picks modules as in :func:`svdtrain.decompose`): build its optimizer afterwards, e.g. from
    :meth:`param_groups`. ``example`` (one input batch, as the model takes it) is what MACs are
    counted on: needed for ``target_reduction``, and used by :meth:`finish`.

    Example:
        >>> svd = SVDTraining(model, SVDTrainingConfig(target_reduction=2.0), example=x)
        >>> optimizer = torch.optim.Adam(svd.param_groups(lr=1e-3))
        >>> for x, y in batches:
        ...     loss = F.cross_entropy(model(x), y) + svd.loss()
        ...     optimizer.zero_grad(); loss.backward(); optimizer.step()
        >>> svd.prune(optimizer)  # then fine-tune on, if you like
        >>> small = svd.finish()  # plain torch layers

    Raises:
        ValueError: a target without ``example``, or what :func:`svdtrain.decompose` refuses.
    """

    def __init__(self, model: nn.Module, config: SVDTrainingConfig = SVDTrainingConfig(), *,
                 example: Inputs | None = None, filter_fn: FilterFn | None = None) -> None:  # fmt: skip
        if config.target_reduction and example is None:
            raise ValueError("target_reduction counts MACs on an input: give example= (one batch)")
        if factored_weights(model):
            _check_scheme(model, config.scheme)
        else:
            decompose(model, config.scheme, config.init, filter_fn)
        self.model, self.config, self.example = model, config, example
        self.baseline_macs = count_macs(model, example) if example is not None else None  # as given: dense
        self.steps = 0  # loss() calls so far (lazy regularization counts them)
        self.cuts = 0  # gradual cuts so far
        self.pruned = False
        self._terms: RegularizationTerms | None = None

    @property
    def regularization(self) -> Regularization:
        """The terms in :meth:`loss`: both while SVD training, orthogonality alone once pruned."""
        c = self.config
        return Regularization(c.ortho_weight, 0.0 if self.pruned else c.sparsity_weight, c.sparsity_kind,
                              c.regularize_every)  # fmt: skip

    def loss(self) -> torch.Tensor | float:
        """The regularizers' weighted term for this step, to add to the task loss before backward
        (0.0 on the steps lazy regularization skips). Call it once per forward."""
        step, self.steps = self.steps, self.steps + 1
        if step % self.config.regularize_every:
            return 0.0
        if self._terms is None:
            self._terms = self.regularization.bind(self.model)
        return self._terms() if self._terms is not None else 0.0

    def param_groups(self, lr: float, *, weight_decay: float = 0.0, s_lr_scale: float | None = None) -> list[dict]:
        """Optimizer groups that never decay U, s, Vh, s at ``s_lr_scale`` (default: the
        config's) times ``lr`` (:func:`svdtrain.train.optimizer.param_groups`)."""
        scale = self.config.s_lr_scale if s_lr_scale is None else s_lr_scale
        return param_groups(self.model, lr, weight_decay=weight_decay, s_lr_scale=scale)

    def policy(self, max_macs: int | None = None) -> RankPolicy:
        """The config's rank rule: its MACs target (or ``max_macs``), else threshold, else energy."""
        c = self.config
        if c.target_reduction:
            budget = max_macs if max_macs is not None else int(self.baseline_macs / c.target_reduction)
            return MacsBudget(self._example(self.example), max_macs=budget, allocation=c.rank_allocation,
                              multiple=c.rank_multiple)  # the config allows a multiple > 1 with greedy only
        return Threshold(c.threshold) if c.threshold else Energy(c.energy)

    def cut(self, optimizer: torch.optim.Optimizer | None = None, batches: Iterable | None = None) -> dict[str, int]:
        """The next of ``gradual_cuts`` cuts (call it at each epoch end, say): prune in place to
        (1/target_reduction)^(k/K) of the dense MACs at the k-th of K, so each cut shrinks the
        model by the same factor and the last reaches the target. ``optimizer`` is kept in step
        (:func:`~svdtrain.train.optimizer.optimizer_follows`); ``batches`` (an iterable read
        twice, e.g. a DataLoader, of tensors, ``(inputs, targets)`` pairs or dicts of keyword
        inputs) feed the calibration and BatchNorm re-estimation. Returns the kept ranks.

        Once all are made (or after :meth:`prune`), a call changes nothing and returns the
        ranks as they are, so a loop may call it at every epoch end.

        Raises:
            ValueError: no gradual cuts configured.
        """
        c = self.config
        if not c.gradual_cuts:
            raise ValueError("cut() makes the config's gradual_cuts, and it has none: set gradual_cuts > 0, or call "
                             "prune() once")  # fmt: skip
        if self.pruned or self.cuts >= c.gradual_cuts:
            return ranks_of(self.model)
        self.cuts += 1
        budget = gradual_budget(self.baseline_macs, c.target_reduction, self.cuts, c.gradual_cuts)
        return self._prune(self.policy(max_macs=budget), optimizer, batches)

    def prune(self, optimizer: torch.optim.Optimizer | None = None, batches: Iterable | None = None, *,
              policy: RankPolicy | None = None) -> dict[str, int]:  # fmt: skip
        """Prune in place by the config's rule (or ``policy``, e.g. a :class:`svdtrain.Speedup`);
        from then on :meth:`loss` is the orthogonality term alone, for fine-tuning.
        ``optimizer`` and ``batches`` as in :meth:`cut`. Returns the kept ranks."""
        ranks = self._prune(self.policy() if policy is None else policy, optimizer, batches)
        self.pruned = True
        return ranks

    def state_dict(self) -> dict:
        """What a resumed run needs besides the model's and optimizer's state dicts: the steps
        and cuts done, whether pruned, each factored weight's rank, the dense MACs, the config.
        Plain JSON values. Save it with the model's state dict, at the same moment."""
        return {"config": self.config.to_dict(), "steps": self.steps, "cuts": self.cuts, "pruned": self.pruned,
                "ranks": ranks_of(self.model), "baseline_macs": self.baseline_macs}  # fmt: skip

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from :meth:`state_dict`: counters restored, and the model's factored weights
        cut to the saved ranks, so the model's own state dict loads next (loading it first works
        too: factored weights take the saved ranks as they load). Build the optimizer after.

        Raises:
            ValueError: the state was saved under another config, or names other weights.
        """
        if not isinstance(state, Mapping) or not {"config", "steps", "cuts", "pruned", "ranks"} <= set(state):
            raise ValueError("SVDTraining.load_state_dict takes what SVDTraining.state_dict() returned (a mapping "
                             "with config, steps, cuts, pruned and ranks)")  # fmt: skip
        saved = SVDTrainingConfig.from_dict(state["config"])
        if saved != self.config:
            changed = [f"{k} {v!r} -> {getattr(self.config, k)!r}" for k, v in saved.to_dict().items()
                       if getattr(self.config, k) != v]  # fmt: skip
            raise ValueError(f"the SVDTraining state was saved under another config ({'; '.join(changed)}): resume "
                             f"with the config it was saved with")  # fmt: skip
        missing = sorted(set(ranks_of(self.model)) - set(state["ranks"]))
        if missing:
            raise ValueError(f"the SVDTraining state has no rank for factored weight {brief(missing[0])}: it was saved "
                             f"from another model")  # fmt: skip
        shrink_to(self.model, state["ranks"])
        self.steps, self.cuts, self.pruned = int(state["steps"]), int(state["cuts"]), bool(state["pruned"])
        if state.get("baseline_macs") is not None:
            self.baseline_macs = int(state["baseline_macs"])
        self._terms = None

    def finish(self, example: Inputs | None = None, **compact_options) -> nn.Module:
        """A compact copy of the model as it is now (prune first), made of plain torch layers:
        :func:`svdtrain.compact` on ``example`` (default: the one given at construction).

        Pruned means :meth:`prune` ran, or the last of the gradual cuts. Unpruned, the copy would
        keep every singular value: with a ``target_reduction`` that misses the target, so it is
        refused; without one it is returned with a warning.

        Raises:
            ValueError: a ``target_reduction`` set and the model not pruned yet.
        """
        self._check_pruned()
        return compact(self.model, self._example(example if example is not None else self.example), **compact_options)

    def _check_pruned(self) -> None:
        c = self.config
        if self.pruned or (c.gradual_cuts and self.cuts == c.gradual_cuts):
            return
        if c.target_reduction:
            cuts = f"{self.cuts} of {c.gradual_cuts} gradual cuts made, " if c.gradual_cuts else ""
            now = count_macs(self.model, self._example(self.example))
            raise ValueError(f"finish() before the model reaches target_reduction={c.target_reduction:g}: {cuts}not "
                             f"pruned, it has {now:,} MACs of the dense {self.baseline_macs:,}; call prune() first")
        warnings.warn("finish() before prune(): nothing was pruned, so the compact model keeps every singular value; "
                      "call prune() first", stacklevel=3)

    def _example(self, example: Inputs | None) -> Inputs | None:
        """``example`` where the model is now (a Trainer may have moved it)."""
        return to_device(example, next(self.model.parameters()).device)

    def _prune(self, policy: RankPolicy, optimizer: torch.optim.Optimizer | None,
               batches: Iterable | None) -> dict[str, int]:  # fmt: skip
        c = self.config
        device = next(self.model.parameters()).device
        on_device = (lambda: (to_device(batch, device) for batch in batches)) if batches is not None else None
        if c.calibration != "none" and on_device is None:
            raise ValueError(f"calibration {c.calibration!r} reads training batches: give batches=")
        calibration = None if on_device is None or c.calibration == "none" else calibrate(
            self.model, on_device(), max_batches=c.calibration_batches, method=c.calibration)  # fmt: skip
        with optimizer_follows(self.model, optimizer):
            ranks = prune(self.model, policy, calibration=calibration)
        if on_device is not None and c.bn_recalibration_batches:
            recalibrate_batchnorm(self.model, on_device(), c.bn_recalibration_batches, device, _AnyBatch())
        self._terms = None  # new factors: group them again
        return ranks


def _check_scheme(model: nn.Module, scheme: str) -> None:
    """An already factored model keeps its factoring: refuse a config that says another scheme
    (``init`` cannot be checked: it only matters when SVDTraining decomposes)."""
    views = {handle.view for handle in factored_weights(model).values()} & set(SCHEMES)
    other = sorted(view for view in views if view != scheme)
    if other:
        raise ValueError(f"the model is already factored with scheme {other[0]!r}, the config says {scheme!r}: "
                         f"SVDTraining keeps an existing factoring, so set scheme={other[0]!r}")


class _AnyBatch(Task):
    """Batches read as :func:`svdtrain.calibrate` reads them (tensors, pairs, keyword dicts)."""

    def forward(self, model: nn.Module, batch: object) -> object:
        return call_on_batch(model, batch)
