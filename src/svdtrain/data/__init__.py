"""Data: in-memory uint8 datasets (CIFAR-10 pickles, image folders, digits) and batching."""

from svdtrain.data.arrays import ImageArrays
from svdtrain.data.batches import TensorBatches, random_crop_flip
from svdtrain.data.cifar10 import download_cifar10, load_cifar10
from svdtrain.data.digits import load_digits_split, tensor_batches
from svdtrain.data.image_folder import load_image_folder
from svdtrain.data.locate import data_folders, locate
from svdtrain.data.text import Corpus, load_byte_text, load_char_text, load_word_corpus
from svdtrain.data.token_batches import TokenBatches

__all__ = [
    "Corpus",
    "ImageArrays",
    "TensorBatches",
    "TokenBatches",
    "data_folders",
    "download_cifar10",
    "load_byte_text",
    "load_char_text",
    "load_cifar10",
    "load_digits_split",
    "load_image_folder",
    "load_word_corpus",
    "locate",
    "random_crop_flip",
    "tensor_batches",
]
