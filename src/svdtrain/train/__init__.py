"""Reusable training pieces for any loop: the step (forward, loss, regularizers), the epoch loop,
regularization, distillation, schedules, distributed helpers, checkpoints. Never sees argparse or
a run's config (that is ``svdtrain.pipeline``)."""

from svdtrain.train.distill import Distillation, distillation_loss
from svdtrain.train.optimizer import optimizer_follows, param_groups
from svdtrain.train.loop import evaluate, evaluate_metrics, recalibrate_batchnorm, train_epoch
from svdtrain.train.regularization import Regularization
from svdtrain.train.step import StepLoss
from svdtrain.train.svd_config import SVDTrainingConfig
from svdtrain.train.svd_training import SVDTraining
from svdtrain.train.watch import TrainingDiverged

__all__ = ["Distillation", "distillation_loss", "Regularization", "SVDTraining", "SVDTrainingConfig", "StepLoss",
           "TrainingDiverged", "evaluate", "evaluate_metrics", "optimizer_follows", "param_groups",
           "recalibrate_batchnorm", "train_epoch"]
