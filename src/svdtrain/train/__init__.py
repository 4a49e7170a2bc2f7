"""Pipeline pieces: training loop, stages, checkpoints. Never sees argparse."""

from svdtrain.train.loop import Regularization, evaluate, train_epoch

__all__ = ["Regularization", "evaluate", "train_epoch"]
