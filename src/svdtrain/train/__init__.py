"""Pipeline pieces: training loop, artifacts. Never sees argparse."""

from svdtrain.train.artifacts import atomic_write, atomic_write_json, atomic_write_text
from svdtrain.train.loop import Regularization, evaluate, train_epoch

__all__ = ["Regularization", "atomic_write", "atomic_write_json", "atomic_write_text", "evaluate", "train_epoch"]
