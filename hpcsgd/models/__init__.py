"""Model registry: name -> constructor(num_classes, in_channels, **options)."""
from __future__ import annotations

from hpcsgd.models.alexnet import alexnet, alexnet_bn
from hpcsgd.models.lenet import lenet
from hpcsgd.models.lstm import lstm_lm
from hpcsgd.models.resnet import cifar_resnet20, resnet18, resnet34, resnet50, resnet101, resnet152

MODELS = {
    "lenet": lenet,
    "alexnet": alexnet,
    "alexnet_bn": alexnet_bn,
    "lstm_lm": lstm_lm,
    "cifar_resnet20": cifar_resnet20,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
}


def build_model(name: str, *, num_classes: int, in_channels: int = 3, **options):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, **options)


# Input channels of each data set's images.
IN_CHANNELS = {"fashion-mnist": 1, "imagenet": 3}


def build_from_config(cfg):
    """The model a run's config describes ([model] section; input channels from [data])."""
    return build_model(cfg.model.name, num_classes=cfg.model.num_classes,
                       in_channels=IN_CHANNELS[cfg.data.name], bn_momentum=cfg.model.bn_momentum,
                       zero_init_last_bn=cfg.model.zero_init_last_bn)
