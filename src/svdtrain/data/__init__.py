"""Data loaders for the experiments."""

from svdtrain.data.digits import load_digits_split, tensor_batches

__all__ = ["load_digits_split", "tensor_batches"]
