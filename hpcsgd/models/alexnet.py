"""AlexNet as Caffe's bvlc_alexnet defines it, and You et al.'s AlexNet-BN (3.2.2).

AlexNet: conv 96@11x11/4 - LRN - pool - conv 256@5x5 (2 groups) - LRN - pool - conv 384@3x3 -
conv 384@3x3 (2 groups) - conv 256@3x3 (2 groups) - pool - fc 4096 - dropout - fc 4096 -
dropout - fc classes: 60,965,224 parameters for 1000 classes, on 227x227 crops (an adaptive
pool to 6x6 also accepts 224x224, where it averages the 5x5 map up).

AlexNet-BN: You et al. add Batch Normalization to AlexNet (the model they point to online).
Our reading: BN (no bias in the preceding layer) after every convolution and after fc6/fc7,
in place of LRN and dropout, keeping the same widths and groups.
"""
from __future__ import annotations

import torch.nn as nn


def _conv(cin, cout, k, stride=1, pad=0, groups=1, bn=False, bn_momentum=0.05):
    conv = nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=not bn)
    return [conv, nn.BatchNorm2d(cout, momentum=bn_momentum)] if bn else [conv]


def _fc(cin, cout, bn, bn_momentum):
    if bn:
        return [nn.Linear(cin, cout, bias=False), nn.BatchNorm1d(cout, momentum=bn_momentum),
                nn.ReLU(inplace=True)]
    return [nn.Linear(cin, cout), nn.ReLU(inplace=True), nn.Dropout(0.5)]


def _alexnet(bn: bool, num_classes=1000, in_channels=3, bn_momentum=0.05, **_) -> nn.Module:
    def norm():  # Caffe's LRN: local_size 5, alpha 1e-4, beta 0.75
        return [] if bn else [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)]
    relu, pool = (lambda: nn.ReLU(inplace=True)), (lambda: nn.MaxPool2d(3, 2))
    b = dict(bn=bn, bn_momentum=bn_momentum)
    features = [
        *_conv(in_channels, 96, 11, 4, **b), relu(), *norm(), pool(),
        *_conv(96, 256, 5, pad=2, groups=2, **b), relu(), *norm(), pool(),
        *_conv(256, 384, 3, pad=1, **b), relu(),
        *_conv(384, 384, 3, pad=1, groups=2, **b), relu(),
        *_conv(384, 256, 3, pad=1, groups=2, **b), relu(), pool(),
    ]
    return nn.Sequential(
        *features, nn.AdaptiveAvgPool2d(6), nn.Flatten(),
        *_fc(256 * 6 * 6, 4096, bn, bn_momentum), *_fc(4096, 4096, bn, bn_momentum),
        nn.Linear(4096, num_classes))


def alexnet(**kw) -> nn.Module:
    return _alexnet(False, **kw)


def alexnet_bn(**kw) -> nn.Module:
    return _alexnet(True, **kw)
