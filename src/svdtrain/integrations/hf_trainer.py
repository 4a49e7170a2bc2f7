"""Hugging Face ``Trainer`` with SVD training, for ``Trainer`` and any subclass of it (TRL's
``SFTTrainer``, ``Seq2SeqTrainer``): :func:`with_svd_training` adds ``svd=`` to the class.

A few lines differ from plain Trainer use::

    svd = svdtrain.SVDTraining(model, svdtrain.SVDTrainingConfig(target_reduction=2.0), example=batch)
    trainer = SVDTrainer(model=model, args=args, train_dataset=train, svd=svd)  # or with_svd_training(SFTTrainer)(...)
    trainer.train()          # SVD training; ends pruned by the config's rule
    trainer.train()          # optional: fine-tunes the pruned model
    small = svd.compact()     # plain torch layers (save it with svdtrain.integrations.hf)

How it meets Trainer's contracts:
- the regularizers join the loss in ``compute_loss`` (training only, scaled as Trainer scales
  that loss for gradient accumulation), after whatever loss the class computes;
- ``get_decay_parameter_names`` keeps weight decay off U, s and Vh (Trainer's rule would decay
  U and Vh, 2-d, and spare s), and ``create_optimizer`` gives s its own group at the config's
  ``s_lr_scale`` before Trainer builds the scheduler on the groups;
- gradual cuts happen at epoch ends in :class:`SVDStateCallback`, masked: no parameter changes
  shape inside ``train()`` (Trainer's DDP wrapper, optimizer and scheduler hold them), the
  dropped slots are held at zero, and every process gets rank 0's ranks and factors; the final
  prune at the end of ``train()`` drops the zeros and the optimizer and scheduler, so a further
  ``train()`` builds them for the smaller factors;
- resuming: the callback's state (steps, cuts, ranks) is saved in each checkpoint's
  ``trainer_state.json``; ``train(resume_from_checkpoint=...)`` restores it and cuts the fresh
  model to the saved ranks before Trainer loads the weights and the optimizer.
Under DDP (``torchrun``/``accelerate launch``), each process runs the same cuts to the same ranks.
"""

from __future__ import annotations

import json
import os
import weakref
from functools import cache

from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import get_last_checkpoint

from svdtrain.surgery import factored_weights
from svdtrain.train.svd_training import SVDTraining

STATE_NAME = "SVDStateCallback"  # its key in trainer_state.json's stateful_callbacks


class SVDTrainerMixin:
    """What SVD training adds to a ``transformers.Trainer`` class; put it first among the bases
    (:func:`with_svd_training` does).

    Raises:
        ValueError: ``svd`` trains another model than the Trainer's.
    """

    def __init__(self, *args, svd: SVDTraining, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.model is not svd.model:
            raise ValueError("the Trainer needs the model svd= decomposed: pass model=svd.model")
        self.svd = svd
        _SVD_OF[svd.model] = svd
        self.add_callback(SVDStateCallback(svd))

    def compute_loss(self, model: nn.Module, inputs: dict, return_outputs: bool = False, num_items_in_batch=None):
        """The class's loss plus, in training, the regularizers' term."""
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)  # fmt: skip
        if not model.training:
            return result
        loss, outputs = result if return_outputs else (result, None)
        loss = loss + self.svd.loss() / self._accumulation_divisor(num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def _accumulation_divisor(self, num_items_in_batch) -> int:
        """What the regularizers' term is divided by, so that the micro-batches of one optimizer
        step add up to one term: Trainer divides a per-batch loss by the accumulation steps
        itself, but not a loss the model already normalized over the accumulated batch."""
        scaled = getattr(self, "loss_is_scaled_for_ga", None)
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or \
                self.compute_loss_func is not None  # fmt: skip
        steps = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        return steps if scaled else 1

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """The class's decayed names less the factors: U, s, Vh have their own regularizers."""
        factors = {id(p) for handle in factored_weights(model).values() for p in handle.factors}
        params = dict(model.named_parameters())
        return [name for name in super().get_decay_parameter_names(model) if id(params.get(name)) not in factors]

    def create_optimizer(self, *args, **kwargs):
        """The class's optimizer, the singular values moved to a group of their own at
        ``svd.s_lr_scale`` times the rate (left as they are at scale 1, and once pruned)."""
        optimizer = super().create_optimizer(*args, **kwargs)
        scale = self.svd.s_lr_scale
        singular = {id(handle.s) for handle in factored_weights(self.model).values()}
        inner = getattr(optimizer, "optimizer", optimizer)
        if scale == 1 or not singular:
            return optimizer
        moved = []
        for group in list(inner.param_groups):
            moved += [p for p in group["params"] if id(p) in singular]
            group["params"] = [p for p in group["params"] if id(p) not in singular]
        inner.param_groups[:] = [group for group in inner.param_groups if group["params"]]
        template = {k: v for k, v in inner.defaults.items() if k != "params"}
        inner.add_param_group({**template, "params": moved, "weight_decay": 0.0, "lr": self.args.learning_rate * scale})
        return optimizer

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """The class's ``train``. Resuming, the SVD-training state saved in the checkpoint comes
        first (the model cut to its ranks). The first ``train`` ends by pruning by the config's
        rule (calibrated on training batches where the config asks), then drops the optimizer
        and scheduler so a further ``train()`` fine-tunes the pruned model with fresh ones."""
        if resume_from_checkpoint:
            self._restore_svd_state(resume_from_checkpoint)
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        if not self.svd.pruned:
            self.svd.prune(batches=self.get_train_dataloader())
            self.optimizer, self.lr_scheduler = None, None
        return output

    def _restore_svd_state(self, checkpoint: str | bool) -> None:
        """Load the SVD-training state from ``checkpoint`` (True: the last in output_dir, as
        Trainer finds it); a checkpoint without one is left to Trainer to load or refuse."""
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
            if checkpoint is None:
                return  # Trainer says there is none
        path = os.path.join(str(checkpoint), "trainer_state.json")
        if not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as file:
            stored = json.load(file).get("stateful_callbacks", {}).get(STATE_NAME)
        if stored is None:
            raise ValueError(f"{checkpoint} holds no SVD-training state (saved by a Trainer without svd=): it cannot "
                             f"resume SVD training")  # fmt: skip
        self.svd.load_state_dict(stored["attributes"]["svd_state"])


class SVDStateCallback(TrainerCallback, ExportableState):
    """One of the config's gradual cuts at each epoch end, the optimizer kept in step; and the
    SVD-training state in every checkpoint (Trainer saves it in ``trainer_state.json``).

    Trainer may rebuild it from a checkpoint without arguments
    (``restore_callback_states_from_checkpoint``): it then finds the model's SVDTraining itself."""

    def __init__(self, svd: SVDTraining | None = None) -> None:
        self.svd = svd

    def state(self) -> dict:
        return {"args": {}, "attributes": {"svd_state": self.svd.state_dict() if self.svd else None}}

    def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._find(model).after_step(optimizer)  # a proximal step; a masked cut's zeros kept

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._find(model)  # before any save

    def on_epoch_end(self, args, state, control, model=None, optimizer=None, train_dataloader=None, **kwargs):
        svd = self._find(model)
        if svd.cuts_left:
            svd.gradual_cut(optimizer, train_dataloader, masked=True)  # shapes stay: Trainer's DDP wrapper holds them
        return control

    def _find(self, model: nn.Module) -> SVDTraining:
        if self.svd is None:
            self.svd = _SVD_OF[model]
        return self.svd


_SVD_OF: weakref.WeakKeyDictionary[nn.Module, SVDTraining] = weakref.WeakKeyDictionary()  # model -> its SVDTraining


@cache
def with_svd_training(trainer_class: type[Trainer]) -> type[Trainer]:
    """``trainer_class`` (``Trainer`` or a subclass: TRL's ``SFTTrainer``, ``Seq2SeqTrainer``)
    with SVD training: the same constructor plus ``svd=`` (module docstring).

    Example:
        >>> SVDSFTTrainer = with_svd_training(trl.SFTTrainer)
        >>> trainer = SVDSFTTrainer(model=svd.model, args=args, train_dataset=data, svd=svd)
    """
    if not (isinstance(trainer_class, type) and issubclass(trainer_class, Trainer)):
        raise TypeError(f"with_svd_training takes transformers.Trainer or a subclass, got {trainer_class!r}")
    if issubclass(trainer_class, SVDTrainerMixin):
        return trainer_class
    return type(f"SVD{trainer_class.__name__}", (SVDTrainerMixin, trainer_class),
                {"__doc__": f"{trainer_class.__name__} with SVD training (svdtrain.integrations.hf_trainer)."})


class SVDTrainer(SVDTrainerMixin, Trainer):
    """``transformers.Trainer`` that trains ``svd.model`` with SVD training (module docstring)."""
