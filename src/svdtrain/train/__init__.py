"""Pipeline pieces: training loop, stages, checkpoints. Never sees argparse."""

from svdtrain.train.loop import Regularization, evaluate, recalibrate_batchnorm, train_epoch

__all__ = ["Regularization", "evaluate", "recalibrate_batchnorm", "train_epoch"]
