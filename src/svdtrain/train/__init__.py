"""Pipeline pieces: training loop, stages, checkpoints. Never sees argparse."""

from svdtrain.train.distill import Distillation, distillation_loss
from svdtrain.train.loop import Regularization, evaluate, evaluate_metrics, recalibrate_batchnorm, train_epoch

__all__ = ["Distillation", "distillation_loss", "Regularization", "evaluate", "evaluate_metrics", "recalibrate_batchnorm", "train_epoch"]
