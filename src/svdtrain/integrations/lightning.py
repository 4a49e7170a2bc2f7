"""PyTorch Lightning with SVD training: the module adds the term, :class:`SVDCallback` cuts.

The regularizers change what the model learns, so, as Lightning asks of anything a model needs
to train, they go in the LightningModule: ``training_step`` returns ``task loss + svd.loss()``
(a callback cannot change the loss: ``on_before_backward`` only sees it). The schedule around
them is a callback, as Lightning's own ``ModelPruning`` is::

    svd = svdtrain.SVDTraining(net, svdtrain.SVDTrainingConfig(target_reduction=2.0), example=x)
    module = MyModule(net, svd)                  # training_step: return loss + self.svd.loss()
    L.Trainer(max_epochs=10, callbacks=[SVDCallback(svd)]).fit(module, loader)  # ends pruned
    L.Trainer(max_epochs=2).fit(module, loader)  # optional fine-tuning: a fresh optimizer
    small = svd.compact()                         # plain torch layers

Lightning's checkpoints hold the callback's state (steps, cuts, ranks): ``fit(module, loader,
ckpt_path=...)`` on a freshly built model and SVDTraining resumes across cuts.

``configure_optimizers`` may use ``svd.param_groups(lr)`` (U, s, Vh never decayed). A second
``fit`` calls it again, so the optimizer holds the pruned factors. Gradual cuts need one
optimizer; under ``strategy="ddp"`` every process cuts to the same ranks.
"""

from __future__ import annotations

import lightning.pytorch as pl

from svdtrain.train.svd_training import SVDTraining


class SVDCallback(pl.Callback):
    """Gradual cuts at epoch ends, masked (no parameter changes shape inside ``fit``, so the
    optimizer and a DDP strategy's wrapper keep working; every process gets rank 0's ranks and
    factors), and the prune by the config's rule when training ends (calibrated on the training
    batches where the config asks), which drops the masked zeros.

    Raises:
        RuntimeError: a training step that did not call ``svd.loss()``, or gradual cuts with
            other than one optimizer.
    """

    def __init__(self, svd: SVDTraining) -> None:
        self.svd = svd
        self._steps_seen = svd.steps

    def state_dict(self) -> dict:
        """Saved in Lightning's checkpoints: the SVD-training state (:meth:`SVDTraining.state_dict`)."""
        return {"svd": self.svd.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resuming (``fit(ckpt_path=...)``): Lightning restores the model first, its factored
        weights taking the saved ranks as they load; then this, before the optimizer is built."""
        self.svd.load_state_dict(state_dict["svd"])
        self._steps_seen = self.svd.steps

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if self.svd.steps == self._steps_seen:
            raise RuntimeError("training_step never called svd.loss(): return task loss + svd.loss()")
        self._steps_seen = self.svd.steps
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0 and trainer.optimizers:  # an optimizer step ran
            self.svd.after_step(trainer.optimizers[0])  # a proximal step; a masked cut's zeros kept

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        svd = self.svd
        if not svd.cuts_left:
            return
        if len(trainer.optimizers) != 1:
            raise RuntimeError(f"gradual cuts keep one optimizer in step; this module has {len(trainer.optimizers)}")
        svd.gradual_cut(trainer.optimizers[0], trainer.train_dataloader, masked=True)  # shapes stay: a DDP wrapper holds them

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.svd.pruned:
            self.svd.prune(batches=trainer.train_dataloader)
