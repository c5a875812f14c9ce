"""Optimizer construction: momentum SGD with weight decay kept off BatchNorm and biases."""
from __future__ import annotations

import torch
import torch.nn as nn

from hpcsgd.config import OptimConfig


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """BN/bias parameters (1-D tensors) get no weight decay when cfg.no_decay_bn_bias."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if cfg.no_decay_bn_bias and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "decays": True}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "decays": False})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups(model, cfg), lr=cfg.base_lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov)


def apply_schedule_(optimizer: torch.optim.Optimizer, point) -> None:
    """Set the LR of every group and the weight decay of the groups that decay."""
    for group in optimizer.param_groups:
        group["lr"] = point.lr
        if group["decays"]:
            group["weight_decay"] = point.weight_decay
