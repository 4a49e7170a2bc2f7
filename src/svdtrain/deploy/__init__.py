"""Deployment. ``rnn``, ``attention``: the plain-torch modules compact models are built from
where no single torch layer fits; they import nothing else of svdtrain, so TorchScript /
torch.export / ONNX files of models using them load without svdtrain. The exporter, which writes
a compact model as those files and needs the model zoo, is :mod:`svdtrain.export`, above this."""

from svdtrain.deploy.attention import PairedAttention
from svdtrain.deploy.rnn import StackedLSTM, StackedRNN

__all__ = ["PairedAttention", "StackedLSTM", "StackedRNN"]
