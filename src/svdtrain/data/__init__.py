"""Data: in-memory uint8 datasets (CIFAR-10 pickles, image folders, digits) and batching."""

from svdtrain.data.arrays import ImageArrays
from svdtrain.data.batches import TensorBatches, random_crop_flip
from svdtrain.data.cifar10 import download_cifar10, load_cifar10
from svdtrain.data.digits import load_digits_split, tensor_batches
from svdtrain.data.image_folder import load_image_folder

__all__ = [
    "ImageArrays",
    "TensorBatches",
    "download_cifar10",
    "load_cifar10",
    "load_digits_split",
    "load_image_folder",
    "random_crop_flip",
    "tensor_batches",
]
