"""Residual networks (He et al. 2016) as the papers trained them.

ResNet-50 comes in two variants that differ only in where the bottleneck downsamples:
- ``caffe`` (default, ``stride_in_1x1=True``): stride 2 in the first 1x1 convolution, as in the
  original Caffe prototxt that Intel Caffe ran (Codreanu et al.);
- ``v1.5`` (``stride_in_1x1=False``): stride 2 in the 3x3 convolution (torchvision, MLPerf).
Both have 25,557,032 parameters. BatchNorm follows Codreanu et al. IV-C (moving-average
fraction 0.95, i.e. PyTorch momentum 0.05) and Goyal et al. (gamma = 0 on the last BN of
each residual block, so every block starts as the identity).
"""
from __future__ import annotations

import torch.nn as nn


def _bn(channels: int, momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=momentum)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride, bn_momentum, stride_in_1x1=True):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = _bn(width, bn_momentum)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout, bn_momentum)
        self.last_bn = self.bn2
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _projection(cin, cout, stride, bn_momentum)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, bn_momentum, stride_in_1x1=True):
        super().__init__()
        cout = width * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(cin, width, 1, s1, bias=False)
        self.bn1 = _bn(width, bn_momentum)
        self.conv2 = nn.Conv2d(width, width, 3, s3, 1, bias=False)
        self.bn2 = _bn(width, bn_momentum)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = _bn(cout, bn_momentum)
        self.last_bn = self.bn3
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _projection(cin, cout, stride, bn_momentum)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _projection(cin, cout, stride, bn_momentum) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout, bn_momentum))


class ResNet(nn.Module):
    def __init__(self, block, depths, widths, *, num_classes, in_channels, stem,
                 bn_momentum=0.05, zero_init_last_bn=True, stride_in_1x1=True):
        super().__init__()
        if stem == "imagenet":  # 7x7/2 convolution + 3x3/2 max pool
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False), _bn(widths[0], bn_momentum),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            cin = widths[0]
        else:  # small images (CIFAR, Fashion-MNIST): one 3x3 convolution, no pooling
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), _bn(widths[0], bn_momentum),
                nn.ReLU(inplace=True))
            cin = widths[0]
        stages = []
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, width, stride, bn_momentum, stride_in_1x1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_last_bn:  # Goyal et al. 5.1: each residual block starts as the identity
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(self.pool(x).flatten(1))


def _imagenet(block, depths, num_classes=1000, in_channels=3, **options) -> ResNet:
    return ResNet(block, depths, (64, 128, 256, 512), num_classes=num_classes,
                  in_channels=in_channels, stem="imagenet", **options)


def resnet18(**kw):
    return _imagenet(BasicBlock, (2, 2, 2, 2), **kw)


def resnet34(**kw):
    return _imagenet(BasicBlock, (3, 4, 6, 3), **kw)


def resnet50(**kw):
    return _imagenet(Bottleneck, (3, 4, 6, 3), **kw)


def resnet101(**kw):
    return _imagenet(Bottleneck, (3, 4, 23, 3), **kw)


def resnet152(**kw):
    return _imagenet(Bottleneck, (3, 8, 36, 3), **kw)


def cifar_resnet20(num_classes=10, in_channels=3, **options) -> ResNet:
    """He et al. 4.2's 20-layer CIFAR ResNet (3 stages x 3 basic blocks, 16/32/64 channels)."""
    return ResNet(BasicBlock, (3, 3, 3), (16, 32, 64), num_classes=num_classes,
                  in_channels=in_channels, stem="small", **options)
