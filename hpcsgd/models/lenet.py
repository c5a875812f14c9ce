"""LeNet as Caffe's MNIST example defines it (the model of You et al. 2019's LeNet runs):
conv 20@5x5 - maxpool 2 - conv 50@5x5 - maxpool 2 - fc 500 - ReLU - fc classes."""
from __future__ import annotations

import torch.nn as nn


def lenet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, **_) -> nn.Module:
    side = ((image_size - 4) // 2 - 4) // 2  # two valid 5x5 convolutions, two 2x2 pools
    return nn.Sequential(
        nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(50 * side * side, 500), nn.ReLU(inplace=True),
        nn.Linear(500, num_classes),
    )
