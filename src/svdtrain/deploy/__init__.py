"""Deployment. ``rnn``, ``attention``: the plain-torch modules compact models are built from
where no single torch layer fits; they import nothing else of svdtrain, so TorchScript /
torch.export / ONNX files of models using them load without svdtrain. ``export``: a compact
model written as those files (it needs svdtrain, so it is imported as
``svdtrain.deploy.export``, not from here)."""

from svdtrain.deploy.attention import PairedAttention
from svdtrain.deploy.rnn import StackedLSTM, StackedRNN

__all__ = ["PairedAttention", "StackedLSTM", "StackedRNN"]
