"""Pipeline pieces: training loop, stages, checkpoints. Never sees argparse."""

from svdtrain.train.distill import Distillation, distillation_loss
from svdtrain.train.loop import (
    Regularization, TrainingDiverged, evaluate, evaluate_metrics, recalibrate_batchnorm, train_epoch,
)  # fmt: skip

__all__ = ["Distillation", "distillation_loss", "Regularization", "TrainingDiverged", "evaluate", "evaluate_metrics", "recalibrate_batchnorm", "train_epoch"]
