"""Model zoo for experiments; any other nn.Module works through the Python API."""

from svdtrain.models.cifar_resnet import DEPTHS, CifarResNet, cifar_resnet
from svdtrain.models.digits_cnn import DigitsCNN

__all__ = ["DEPTHS", "CifarResNet", "DigitsCNN", "cifar_resnet"]
