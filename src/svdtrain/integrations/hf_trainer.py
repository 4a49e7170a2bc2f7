"""Hugging Face ``Trainer`` with SVD training: :class:`SVDTrainer` is ``Trainer`` plus ``svd=``.

Three lines differ from plain Trainer use::

    svd = svdtrain.SVDTraining(model, svdtrain.SVDTrainingConfig(target_reduction=2.0), example=batch)
    trainer = SVDTrainer(model=model, args=args, train_dataset=train, svd=svd)
    trainer.train()          # SVD training; ends pruned by the config's rule
    trainer.train()          # optional: fine-tunes the pruned model
    small = svd.finish()     # plain torch layers (save it with svdtrain.integrations.hf)

How it meets Trainer's contracts: the regularizers join the loss in ``compute_loss`` (training
only, scaled as Trainer scales that loss for gradient accumulation); ``get_decay_parameter_names``
keeps weight decay off U, s and Vh (Trainer's rule would decay U and Vh, 2-d, and spare s);
gradual cuts happen at epoch ends in a callback, with Trainer's optimizer kept in step in place
(its scheduler and accelerate's wrapper hold it); after the final prune ``train()`` drops the
optimizer and scheduler, so a further ``train()`` builds them for the smaller factors.
Gradual cuts assume one process: a DDP wrapper holds the parameters it was built with.
"""

from __future__ import annotations

from torch import nn
from transformers import Trainer, TrainerCallback

from svdtrain.surgery import factored_weights
from svdtrain.train.svd_training import SVDTraining


class SVDTrainer(Trainer):
    """``transformers.Trainer`` that trains ``svd.model`` with SVD training (module docstring).

    Raises:
        ValueError: ``svd`` trains another model than the Trainer's.
    """

    def __init__(self, *args, svd: SVDTraining, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.model is not svd.model:
            raise ValueError("SVDTrainer needs the model svd= decomposed: pass model=svd.model")
        self.svd = svd
        if svd.config.gradual_cuts:
            self.add_callback(_GradualCuts(self))

    def compute_loss(self, model: nn.Module, inputs: dict, return_outputs: bool = False, num_items_in_batch=None):
        """Trainer's loss plus, in training, the regularizers' term."""
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
        """Trainer's decayed names less the factors: U, s, Vh have their own regularizers."""
        factors = {id(p) for handle in factored_weights(model).values() for p in handle.factors}
        params = dict(model.named_parameters())
        return [name for name in super().get_decay_parameter_names(model) if id(params.get(name)) not in factors]

    def train(self, *args, **kwargs):
        """Trainer's ``train``; the first one ends by pruning by the config's rule (calibrated on
        training batches where the config asks), then drops the optimizer and scheduler so a
        further ``train()`` fine-tunes the pruned model with fresh ones."""
        output = super().train(*args, **kwargs)
        if not self.svd.pruned:
            self.svd.prune(batches=self.get_train_dataloader())
            self.optimizer, self.lr_scheduler = None, None
        return output


class _GradualCuts(TrainerCallback):
    """One of the config's gradual cuts at each epoch end, the optimizer kept in step."""

    def __init__(self, trainer: SVDTrainer) -> None:
        self.trainer = trainer

    def on_epoch_end(self, args, state, control, **kwargs):
        svd = self.trainer.svd
        if not svd.pruned and svd.cuts < svd.config.gradual_cuts:
            svd.cut(self.trainer.optimizer, self.trainer.get_train_dataloader())
        return control
