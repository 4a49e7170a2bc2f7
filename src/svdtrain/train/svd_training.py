"""SVDTraining: the method for any training loop (your own, Hugging Face Trainer, Lightning,
the pipeline's): the regularizers' term for each step, cuts towards a target, the compact model."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Callable, Iterable, TypeVar

import torch
from torch import nn

from svdtrain.bounds import brief
from svdtrain.linalg import SCHEMES, importance_order
from svdtrain.surgery import ParamsBudget, RankPolicy, Ranks, calibrate, compact, count_macs, decompose, factored_weights, prune
from svdtrain.surgery.budget import macs_per_rank
from svdtrain.surgery.calibrate import call_on_batch
from svdtrain.surgery.decompose import FilterFn
from svdtrain.surgery.macs import Inputs
from svdtrain.surgery.policies import gradual_budget
from svdtrain.surgery.ranks import kept_energy
from svdtrain.surgery.walk import copy_model
from svdtrain.tasks.base import Task, to_device
from svdtrain.train.checkpoint import ranks_of, shrink_to
from svdtrain.train.distill import Distillation
from svdtrain.train.distributed import Distributed
from svdtrain.train.loop import recalibrate_batchnorm
from svdtrain.train.optimizer import optimizer_follows, param_groups
from svdtrain.train.rank_masks import RankMasks
from svdtrain.train.regularization import Regularization, RegularizationTerms
from svdtrain.train.sharded_cut import decided, gathered, scatter_cut, skeleton_of, uses_fsdp
from svdtrain.train.svd_config import SVDTrainingConfig
from svdtrain.train.svd_policy import measure_multiple, policy_for, speed_example_of

Read = TypeVar("Read")

class SVDTraining:
    """SVD training of ``model`` in any loop: add :meth:`loss` to the task loss each step (and
    call :meth:`after_step` after the optimizer's, for a proximal term), :meth:`gradual_cut` at epoch
    ends when cutting gradually, :meth:`prune` once, fine-tune if you like, then :meth:`compact`
    for the compact model. The pipeline (``svdtrain run``) drives this same object.

    ``model`` is decomposed in place (unless it already has factored weights; ``filter_fn``
    picks modules as in :func:`svdtrain.decompose`): build its optimizer afterwards, e.g. from
    :meth:`param_groups`. ``example`` (one input batch, as the model takes it) is what MACs are
    counted on: needed for a target, ``macs_weighted`` and ``budget_tail``, and used by
    :meth:`compact`. ``teacher`` (with ``distill_weight``): the model to distill from; default,
    a frozen copy of ``model`` as given, taken before it is decomposed. ``baseline_macs``: the
    dense model's MACs, where ``model`` is already factored (counted on ``model`` otherwise).
    ``speed_example``: the batch speed targets time (default: ``example`` at the config's
    ``speed_batch_size``). ``log``: where the cuts' one-line reports go (default: nowhere).

    In a distributed run (``torch.distributed`` initialized), the ranks are chosen on rank 0
    and applied on every process, so all end with the same ranks; re-wrap the model (DDP holds
    the parameters it was built with) after a cut.

    Under FSDP2 (``fully_shard``; make this object first, before sharding, as it keeps the
    model's structure), every process calls each method alike: cuts are masked (FSDP2 keeps
    parameter shapes), decided on rank 0 from a whole copy gathered to its CPU
    (:mod:`svdtrain.train.sharded_cut`), and :meth:`compact` returns the compact model on rank 0
    and None on the others. Not under FSDP2: calibration, speed targets, a measured rank multiple.

    Example:
        >>> svd = SVDTraining(model, SVDTrainingConfig(target_reduction=2.0), example=x)
        >>> optimizer = torch.optim.Adam(svd.param_groups(lr=1e-3))
        >>> for x, y in batches:
        ...     loss = F.cross_entropy(model(x), y) + svd.loss()
        ...     optimizer.zero_grad(); loss.backward(); optimizer.step()
        >>> svd.prune(optimizer)  # then fine-tune on, if you like
        >>> small = svd.compact()  # plain torch layers

    Raises:
        ValueError: an option that needs ``example`` without it, ``distill_weight`` on an
            already factored model without ``teacher``, or what :func:`svdtrain.decompose` refuses.
    """

    def __init__(self, model: nn.Module, config: SVDTrainingConfig = SVDTrainingConfig(), *,
                 example: Inputs | None = None, filter_fn: FilterFn | None = None, teacher: nn.Module | None = None,
                 baseline_macs: int | None = None, speed_example: torch.Tensor | None = None,
                 log: Callable[[str], None] | None = None, dist: Distributed | None = None) -> None:  # fmt: skip
        needs = [name for name in ("target_reduction", "target_speedup", "macs_weighted", "budget_tail")
                 if getattr(config, name)]  # fmt: skip
        if needs and example is None:
            raise ValueError(f"{needs[0]} counts MACs on an input: give example= (one batch)")
        if needs and uses_fsdp(model):
            raise ValueError(f"SVDTraining was made after fully_shard: {needs[0]} counts MACs, and cuts gather a "
                             f"whole copy into the model's structure; make SVDTraining before sharding")  # fmt: skip
        factored = bool(factored_weights(model))
        if config.distill_weight and teacher is None:
            if factored:
                raise ValueError("distill_weight distills from the dense model, and this one is already factored: "
                                 "give teacher=")  # fmt: skip
            teacher = copy.deepcopy(model)
        if factored:
            _check_scheme(model, config.scheme)
        else:
            decompose(model, config.scheme, config.init, filter_fn)
            if config.lean_start:  # before any optimizer exists: nothing to follow
                prune(model, ParamsBudget(config.lean_start))
        self.model, self.config, self.example = model, config, example
        if baseline_macs is None and example is not None:
            baseline_macs = count_macs(model, example)  # as given: dense, or its factored form
        self.baseline_macs = baseline_macs
        if speed_example is None and isinstance(example, torch.Tensor):
            speed_example = speed_example_of(config, example)
        self.speed_example, self.log, self._dist = speed_example, log or (lambda line: None), dist
        self.teacher = Distillation(teacher, config.distill_weight, config.distill_temperature) if teacher else None
        self.steps = 0  # loss() calls so far (lazy regularization counts them)
        self.cuts = 0  # gradual cuts so far
        self.pruned = False
        self.measured_multiple: int | None = None  # rank_multiple 0: measured at the first cut
        self.masks = RankMasks(model)  # cuts made with masked=True
        self._skeleton, self._no_skeleton = None, "SVDTraining was made after fully_shard"
        if not uses_fsdp(model):  # FSDP2 may shard it next: keep its structure (on the meta device: no memory)
            try:
                self._skeleton = skeleton_of(model)
            except Exception as error:  # only FSDP2's cuts need it: say why there, not here
                self._no_skeleton = f"the model's structure could not be copied ({type(error).__name__}: {error})"
        self._tails: dict[str, torch.Tensor] | None = {} if config.budget_tail else None
        self._scales = self._macs_scales() if config.macs_weighted else None
        self._terms: RegularizationTerms | None = None
        self._regularization: tuple[bool, Regularization] | None = None  # (pruned, its terms)

    @property
    def dist(self) -> Distributed:
        """The process group: the one given, else the one initialized now (Trainer and Lightning
        initialize theirs after this object is made), else one process."""
        return self._dist if self._dist is not None else Distributed.current()

    # -- the loss, each step -------------------------------------------------------------------
    @property
    def regularization(self) -> Regularization:
        """The terms in :meth:`loss`: both while SVD training, orthogonality alone once pruned.
        Made once for each phase (it is read every step); the tails change in place."""
        if self._regularization is None or self._regularization[0] != self.pruned:
            c = self.config
            terms = Regularization(c.ortho_weight, every=c.regularize_every) if self.pruned else Regularization(
                c.ortho_weight, c.sparsity_weight, c.sparsity_kind, c.regularize_every, self._scales, c.proximal,
                self._tails)  # fmt: skip
            self._regularization = (self.pruned, terms)
        return self._regularization[1]

    @property
    def distillation(self) -> Distillation | None:
        """The teacher's term where it applies now: fine-tuning (pruned) with ``distill_weight``,
        SVD training too with ``distill``. In a loop: ``loss = svd.distillation.loss(x, logits,
        task_loss)`` in place of the task loss (a model taking one tensor; else ``.mix`` with the
        teacher's logits)."""
        return self.teacher if self.teacher and (self.pruned or self.config.distill) else None

    def loss(self) -> torch.Tensor | float:
        """The regularizers' weighted term for this step, to add to the task loss before backward
        (0.0 on the steps lazy regularization skips). Call it once per forward."""
        step, self.steps = self.steps, self.steps + 1
        regularization = self.regularization
        if not regularization.due(step):
            return 0.0
        if self._terms is None:
            self._terms = regularization.bind(self.model)
        return self._terms() if self._terms is not None else 0.0

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """After each ``optimizer.step()``: the proximal L1 step where the config asks, and the
        slots a masked cut dropped zeroed again (else nothing)."""
        self.regularization.after_step(self.model, getattr(optimizer, "optimizer", optimizer))
        self.masks.rezero()

    @property
    def s_lr_scale(self) -> float:
        """The singular values' rate as a multiple of the others': the config's while SVD
        training, 1 once pruned (fine-tuning moves every factor alike)."""
        return 1.0 if self.pruned else self.config.s_lr_scale

    def param_groups(self, lr: float, *, weight_decay: float = 0.0, s_lr_scale: float | None = None) -> list[dict]:
        """Optimizer groups that never decay U, s, Vh, s at ``s_lr_scale`` (default:
        :attr:`s_lr_scale`) times ``lr`` (:func:`svdtrain.train.optimizer.param_groups`)."""
        scale = self.s_lr_scale if s_lr_scale is None else s_lr_scale
        return param_groups(self.model, lr, weight_decay=weight_decay, s_lr_scale=scale)

    def refresh_tails(self) -> None:
        """With ``budget_tail``: choose again the singular values the target would drop now, the
        ones the sparsity term pulls on (call it at each epoch start; :meth:`gradual_cut` does too)."""
        if self._tails is None:
            return
        full = {name: layer.rank for name, layer in factored_weights(self.model).items()}
        policy = self.policy()  # outside what rank 0 alone runs: a measured multiple is decided with every process

        def tails(model: nn.Module) -> dict[str, torch.Tensor]:  # a masked cut's dead slots: in the tail
            ranks, masks = policy.ranks(model), {}
            for name, layer in factored_weights(model).items():
                mask = torch.ones(full[name], dtype=torch.bool)
                mask[importance_order(layer.s)[: ranks[name]].cpu()] = False
                if mask.any():
                    masks[name] = mask
            return masks

        device = next(self.model.parameters()).device
        self._tails.clear()
        self._tails.update({name: mask.to(device) for name, mask in self._read(tails).items()})
        if self._terms is not None:
            self._terms.refresh()

    # -- ranks -----------------------------------------------------------------------------
    def policy(self, max_macs: int | None = None) -> RankPolicy:
        """The config's rank rule (:func:`~svdtrain.train.svd_policy.policy_for`); ``max_macs``:
        a gradual cut's budget on the way to the MACs target."""
        return policy_for(self.config, example=self._example(self.example), speed_example=self.speed_example,
                          baseline_macs=self.baseline_macs, max_macs=max_macs, multiple=self.multiple())  # fmt: skip

    def multiple(self) -> int:
        """The rank multiple: the config's, or with ``rank_multiple`` 0 the one of 1, 8, 16, 32,
        64 whose compact model measures fastest at the target, measured once (by rank 0)."""
        if self.config.rank_multiple:
            return self.config.rank_multiple
        if self.measured_multiple is None:
            if uses_fsdp(self.model):
                self._check_shardable()
            def policy(multiple: int) -> RankPolicy:
                return policy_for(self.config, example=self._example(self.example), speed_example=self.speed_example,
                                  baseline_macs=self.baseline_macs, multiple=multiple)  # fmt: skip

            measured = measure_multiple(self.config, self.model, policy, self.speed_example, self.log) \
                if self.dist.is_main else None  # fmt: skip
            self.measured_multiple = self.dist.broadcast(measured)
        return self.measured_multiple

    def target_energy(self) -> float | None:
        """The share of all factored weights' sum(s^2) that a cut to the MACs target by |s| would
        keep now: what SVD training should raise, epoch by epoch. None without a MACs target (a
        speed target would time the model each time). With ``rank_multiple`` 0 it uses the
        measured multiple once there is one, and 1 before (it never measures)."""
        if not self.config.target_reduction:
            return None
        policy = policy_for(self.config, example=self._example(self.example), speed_example=self.speed_example,
                            baseline_macs=self.baseline_macs,
                            multiple=self.config.rank_multiple or self.measured_multiple or 1)  # fmt: skip
        return self._read(lambda model: kept_energy(model, policy.ranks(model)))

    def gradual_cut(self, optimizer: torch.optim.Optimizer | None = None, batches: Iterable | None = None, *,
            bn_batches: Iterable | None = None, masked: bool = False) -> dict[str, int]:  # fmt: skip
        """The next of ``gradual_cuts`` cuts (call it at each epoch end, say): prune in place to
        (1/target_reduction)^(k/K) of the dense MACs at the k-th of K, so each cut shrinks the
        model by the same factor and the last reaches the target. ``optimizer`` is kept in step
        (:func:`~svdtrain.train.optimizer.optimizer_follows`); ``batches`` (an iterable read
        twice, e.g. a DataLoader, of tensors, ``(inputs, targets)`` pairs or dicts of keyword
        inputs) feed the calibration and the BatchNorm re-estimation (``bn_batches``, where
        given, the latter). Returns the kept ranks.

        ``masked``: keep every parameter's shape (the dropped slots held at zero; call
        :meth:`after_step` after each optimizer step): for a model a wrapper holds (DDP, Trainer,
        Lightning), with no re-wrap. :meth:`prune` or :meth:`compact` drops the zeros at the end.
        Unmasked, the factors shrink: rebuild a DDP wrapper after the cut.

        Once all are made (or after :meth:`prune`), a call changes nothing and returns the
        ranks as they are, so a loop may call it at every epoch end.

        Raises:
            ValueError: no gradual cuts configured.
        """
        c = self.config
        if not c.gradual_cuts:
            raise ValueError("gradual_cut() makes the config's gradual_cuts, and it has none: set gradual_cuts > 0, "
                             "or call prune() once")  # fmt: skip
        if not self.cuts_left:
            return {**ranks_of(self.model), **self.masks.live}
        self.cuts += 1
        budget = gradual_budget(self.baseline_macs, c.target_reduction, self.cuts, c.gradual_cuts)
        ranks = self._prune(self.policy(max_macs=budget), optimizer, batches, bn_batches, masked=masked)
        self.log(f"svd_train: pruned to {budget:,} MACs ({sum(ranks.values())} singular values kept)")
        self.refresh_tails()
        return ranks

    @property
    def cuts_left(self) -> int:
        """Gradual cuts still to make: none once all are made, or after :meth:`prune`."""
        return 0 if self.pruned else max(0, self.config.gradual_cuts - self.cuts)

    def prune(self, optimizer: torch.optim.Optimizer | None = None, batches: Iterable | None = None, *,
              bn_batches: Iterable | None = None, recalibrate: bool = True,
              policy: RankPolicy | None = None) -> dict[str, int]:  # fmt: skip
        """Prune in place by the config's rule (or ``policy``, e.g. a :class:`svdtrain.Speedup`);
        from then on :meth:`loss` is the orthogonality term alone, for fine-tuning, and
        :attr:`distillation` applies where ``distill_weight`` is set. ``optimizer``, ``batches``
        and ``bn_batches`` as in :meth:`gradual_cut`; ``recalibrate=False`` leaves BatchNorm as it is
        (to measure the model first, then :meth:`recalibrate_batchnorm`). Returns the kept ranks."""
        policy = self.policy() if policy is None else policy
        ranks = self._prune(policy, optimizer, batches, bn_batches, recalibrate=recalibrate)
        self.pruned = True
        return ranks

    def recalibrates(self) -> bool:
        """Whether a cut re-estimates BatchNorm statistics: the model has some, and it is on."""
        has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        return bool(self.config.bn_recalibration_batches) and has_batchnorm

    def recalibrate_batchnorm(self, batches: Iterable) -> None:
        """Re-estimate BatchNorm statistics on up to ``bn_recalibration_batches`` of ``batches``."""
        if self.recalibrates():
            device = next(self.model.parameters()).device
            recalibrate_batchnorm(self.model, batches, self.config.bn_recalibration_batches, device, _AnyBatch())

    # -- resuming and the compact model ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """What a resumed run needs besides the model's and optimizer's state dicts: the steps
        and cuts done, whether pruned, each factored weight's rank, the dense MACs, the measured
        rank multiple, the config. Plain JSON values. Save it with the model's state dict."""
        return {"config": self.config.to_dict(), "steps": self.steps, "cuts": self.cuts, "pruned": self.pruned,
                "ranks": ranks_of(self.model), "baseline_macs": self.baseline_macs,
                "measured_multiple": self.measured_multiple, "masked_ranks": dict(self.masks.live)}  # fmt: skip

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
        self.measured_multiple = state.get("measured_multiple")
        self.masks.restore(state.get("masked_ranks") or {})
        self._terms = None

    def compact(self, example: Inputs | None = None, **compact_options) -> nn.Module:
        """A compact copy of the model as it is now (prune first), made of plain torch layers:
        :func:`svdtrain.compact` on ``example`` (default: the one given at construction).

        Pruned means :meth:`prune` ran, or the last of the gradual cuts. Unpruned, the copy would
        keep every singular value: with a ``target_reduction`` that misses the target, so it is
        refused; without one it is returned with a warning.

        Raises:
            ValueError: a ``target_reduction`` set and the model not pruned yet.
        """
        self._check_pruned()
        example = self._example(example if example is not None else self.example)
        if uses_fsdp(self.model):
            self._check_shardable()
            with gathered(self.model, self._skeleton, self.dist) as whole:
                return decided(self.dist, lambda: compact(self._live(whole), example, **compact_options), share=False)
        if self.masks:  # a masked cut's zeros: dropped now, training being over
            self.masks.materialize()
        return compact(self.model, example, **compact_options)

    def cut(self, *args, **kwargs) -> dict[str, int]:
        """The name of an earlier release: :meth:`gradual_cut`."""
        warnings.warn("SVDTraining.cut() is now gradual_cut()", DeprecationWarning, stacklevel=2)
        return self.gradual_cut(*args, **kwargs)

    def finish(self, *args, **kwargs) -> nn.Module:
        """The name of an earlier release: :meth:`compact`."""
        warnings.warn("SVDTraining.finish() is now compact()", DeprecationWarning, stacklevel=2)
        return self.compact(*args, **kwargs)

    def _check_pruned(self) -> None:
        c = self.config
        if self.pruned or (c.gradual_cuts and self.cuts == c.gradual_cuts):
            return
        if c.target_reduction:
            cuts = f"{self.cuts} of {c.gradual_cuts} gradual cuts made, " if c.gradual_cuts else ""
            now = self._read(lambda model: count_macs(model, self._example(self.example)))
            raise ValueError(f"compact() before the model reaches target_reduction={c.target_reduction:g}: {cuts}not "
                             f"pruned, it has {now:,} MACs of the dense {self.baseline_macs:,}; call prune() first")
        warnings.warn("compact() before prune(): nothing was pruned, so the compact model keeps every singular value; "
                      "call prune() first", stacklevel=3)

    def _example(self, example: Inputs | None) -> Inputs | None:
        """``example`` where the model is now (a Trainer may have moved it), or where rank 0's
        whole copy of a sharded model is (its CPU)."""
        return to_device(example, "cpu" if uses_fsdp(self.model) else next(self.model.parameters()).device)

    def _read(self, read: Callable[[nn.Module], Read]) -> Read:
        """``read(model)``; for a model FSDP2 has sharded, read on rank 0's whole copy of it
        and given to every process."""
        if not uses_fsdp(self.model):
            return read(self._live(self.model))
        self._check_shardable()
        with gathered(self.model, self._skeleton, self.dist) as whole:
            return decided(self.dist, lambda: read(self._live(whole)))

    def _live(self, model: nn.Module) -> nn.Module:
        """``model`` as the rank rules read it: a masked cut's dead slots dropped (on a copy of
        the model itself; a gathered copy in place), so no rule keeps a zero value."""
        if not self.masks:
            return model
        view = copy_model(model) if model is self.model else model
        masks = RankMasks(view)
        masks.restore(self.masks.live)
        masks.materialize()
        return view

    def _check_shardable(self) -> None:
        """Refuse, under FSDP2, what needs the whole model on its own device."""
        c = self.config
        if self._skeleton is None:
            raise ValueError(f"{self._no_skeleton}: cuts and compact under FSDP2 gather a whole copy into the "
                             f"model's structure, kept when SVDTraining is made before sharding")  # fmt: skip
        for name, on in (("calibration", c.calibration != "none"), ("target_speedup", c.target_speedup),
                         ("rank_multiple 0 (measured)", c.rank_multiple == 0)):  # fmt: skip
            if on:
                raise ValueError(f"{name} is not supported under FSDP2: it runs the model whole on its own device; "
                                 f"use a MACs target with a set rank_multiple and calibration 'none'")  # fmt: skip

    def _macs_scales(self) -> dict[str, float]:
        """Each weight's MACs per singular value over their mean (1 on average): sparsity
        weights that pull where a MACs budget is spent."""
        costs = macs_per_rank(self.model, self._example(self.example))
        paying = [c for c in costs.values() if c > 0]
        mean = sum(paying) / len(paying) if paying else 1.0
        return {name: cost / mean for name, cost in costs.items()}

    def _prune(self, policy: RankPolicy, optimizer: torch.optim.Optimizer | None, batches: Iterable | None,
               bn_batches: Iterable | None, *, recalibrate: bool = True,
               masked: bool = False) -> dict[str, int]:  # fmt: skip
        """Calibrate where asked, choose the ranks (on rank 0 of a distributed run), cut (masked,
        or with the optimizer following), give every process rank 0's factors, then re-estimate
        BatchNorm statistics."""
        c = self.config
        device = next(self.model.parameters()).device
        if uses_fsdp(self.model):
            ranks = self._cut_sharded(policy, optimizer)
        else:
            if c.calibration != "none" and batches is None:
                raise ValueError(f"calibration {c.calibration!r} reads training batches: give batches=")
            calibration = None
            if c.calibration != "none":
                calibration = calibrate(self.model, (to_device(b, device) for b in batches),
                                        max_batches=c.calibration_batches, method=c.calibration)  # fmt: skip
                self.log(f"prune: {c.calibration} calibration of {len(calibration.stats)} of "
                         f"{len(factored_weights(self.model))} weights on {calibration.batches} batches")  # fmt: skip
            dist = self.dist
            ranks = dist.broadcast(policy.ranks(self._live(self.model), calibration) if dist.is_main else None)
            if masked:
                ranks = self.masks.cut(lambda model: prune(model, Ranks(ranks), calibration=calibration), optimizer)
            else:
                with optimizer_follows(self.model, optimizer):
                    if self.masks:
                        self.masks.materialize()
                    ranks = prune(self.model, Ranks(ranks), calibration=calibration)
            if dist.enabled:  # each process calibrated on its own batches: rank 0's factors for all
                dist.broadcast_tensors([p for h in factored_weights(self.model).values() for p in h.factors])
        bn_batches = batches if bn_batches is None else bn_batches
        if recalibrate and bn_batches is not None:
            self.recalibrate_batchnorm(to_device(b, device) for b in bn_batches)
        self._terms = None  # new factors: group them again
        return ranks

    def _cut_sharded(self, policy: RankPolicy, optimizer: torch.optim.Optimizer | None) -> dict[str, int]:
        """A masked cut of a model FSDP2 has sharded: decided and made on rank 0's whole copy,
        the cut factors scattered into every process's shards."""
        self._check_shardable()
        with gathered(self.model, self._skeleton, self.dist) as whole:
            whole = self._live(whole) if whole is not None else None
            ranks = decided(self.dist, lambda: prune(whole, Ranks(policy.ranks(whole))))
            scatter_cut(self.model, whole, ranks, self.dist)
        self.masks.hold(ranks, optimizer)
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
