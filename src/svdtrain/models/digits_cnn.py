"""A small CNN for scikit-learn's 8x8 digits: the demo's model, deliberately over-wide."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(in_c: int, out_c: int) -> list[nn.Module]:
    return [nn.Conv2d(in_c, out_c, 3, padding=1, bias=False), nn.BatchNorm2d(out_c), nn.ReLU()]


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(1, width),  # (N, w, 8, 8)
            *_conv_bn_relu(width, 2 * width),  # (N, 2w, 8, 8)
            nn.MaxPool2d(2),  # (N, 2w, 4, 4)
            *_conv_bn_relu(2 * width, 4 * width),  # (N, 4w, 4, 4)
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (N, 4w)
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
