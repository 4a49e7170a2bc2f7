"""Pipeline pieces: training loop, stages, checkpoints. Never sees argparse."""

from svdtrain.train.distill import Distillation, distillation_loss
from svdtrain.train.loop import evaluate, evaluate_metrics, recalibrate_batchnorm, train_epoch
from svdtrain.train.regularization import Regularization
from svdtrain.train.step import StepLoss
from svdtrain.train.watch import TrainingDiverged

__all__ = ["Distillation", "distillation_loss", "Regularization", "StepLoss", "TrainingDiverged", "evaluate",
           "evaluate_metrics", "recalibrate_batchnorm", "train_epoch"]
