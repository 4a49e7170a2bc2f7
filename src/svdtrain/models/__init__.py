"""Model zoo for experiments; any other nn.Module works through the Python API."""

from __future__ import annotations

from typing import Callable

from torch import nn

from svdtrain.models.cifar_resnet import DEPTHS, CifarResNet, cifar_resnet
from svdtrain.models.digits_cnn import DigitsCNN
from svdtrain.models.gpt import GPT
from svdtrain.models.imagenet_resnet import ImageNetResNet, resnet18, resnet50
from svdtrain.models.lstm_lm import LSTMLanguageModel

MODELS: dict[str, Callable[[int], nn.Module]] = {
    **{f"resnet{depth}": (lambda n, d=depth: cifar_resnet(d, n)) for depth in DEPTHS},
    "imagenet_resnet18": resnet18,
    "imagenet_resnet50": resnet50,
    "digits_cnn": lambda n: DigitsCNN(num_classes=n),
}


def build_model(name: str, num_classes: int) -> nn.Module:
    """A fresh model by name (``resnet20`` ... ``resnet110`` are the CIFAR ResNets)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models are {', '.join(MODELS)}")
    return MODELS[name](num_classes)


__all__ = [
    "DEPTHS", "GPT", "MODELS", "CifarResNet", "DigitsCNN", "ImageNetResNet", "LSTMLanguageModel", "build_model",
    "cifar_resnet", "resnet18", "resnet50",
]  # fmt: skip
