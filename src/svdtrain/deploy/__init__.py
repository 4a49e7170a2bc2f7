"""Deployed forms that no single torch layer provides. Plain torch only: nothing here imports
the rest of svdtrain, and TorchScript / torch.export / ONNX files of models using them load
without svdtrain."""

from svdtrain.deploy.rnn import StackedLSTM, StackedRNN

__all__ = ["StackedLSTM", "StackedRNN"]
