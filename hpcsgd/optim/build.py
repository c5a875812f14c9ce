"""Optimizer construction from ``[optim]`` and the per-step schedule hand-off.

Parameters fall into two groups: layer weights (ndim >= 2: convolutions, fully-connected,
embeddings and LSTM matrices) and BatchNorm parameters / biases (ndim <= 1). By default the
second group gets no weight decay (``no_decay_bn_bias``, Goyal et al.) and, like every tensor,
its own LARS/DATE ratio (``layerwise_bn_bias = true``: You et al. 3.2.3 and Table 4 treat a
layer's bias as a layer of its own). ``layerwise_bn_bias = false`` is the MLPerf-style
exclusion: those tensors take plain momentum at the global LR. It is not the default: with
LARS's global LR (gamma = 4-64) a bias then moves gamma x g per step; LeNet at batch 512,
gamma 32, grew a bias norm from 0.46 to 659 in 25 steps (tests/unit/test_lars.py).

| optim.name | optim.date | optimizer |
|---|---|---|
| sgd (pytorch momentum) | false | torch.optim.SGD (momentum 0 = plain SGD; nesterov) |
| sgd (caffe momentum) | false | hpcsgd.optim.momentum.MomentumSGD |
| lars | false | hpcsgd.optim.lars.LARS |
| sgd, adagrad, rmsprop, adam | true | hpcsgd.optim.date.DateBounded over the base optimizer |
| adagrad, rmsprop, adam | false | torch.optim.Adagrad / RMSprop / Adam (L2 weight decay) |
"""
from __future__ import annotations

import torch
import torch.nn as nn

from hpcsgd.config import OptimConfig
from hpcsgd.optim.date import DateBounded
from hpcsgd.optim.lars import LARS
from hpcsgd.optim.momentum import MomentumSGD


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Weights and BN/bias groups, each with the flags apply_schedule_ and LARS/DATE read:
    ``decays`` (the schedule sets its weight decay) and ``layerwise`` (gets the per-layer ratio)."""
    weights, bn_bias = [], []
    for p in model.parameters():
        if p.requires_grad:
            (bn_bias if p.ndim <= 1 else weights).append(p)
    groups = []
    if weights:
        groups.append({"params": weights, "name": "weights", "weight_decay": cfg.weight_decay,
                       "decays": True, "layerwise": True})
    if bn_bias:
        decays = not cfg.no_decay_bn_bias
        groups.append({"params": bn_bias, "name": "bn_bias",
                       "weight_decay": cfg.weight_decay if decays else 0.0, "decays": decays,
                       "layerwise": cfg.layerwise_bn_bias})
    return groups


def _base_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return MomentumSGD(groups, lr=cfg.base_lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov, style=cfg.momentum_style)
    if cfg.name == "adagrad":
        return torch.optim.Adagrad(groups, lr=cfg.base_lr, eps=cfg.eps)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.base_lr, alpha=cfg.rmsprop_alpha, eps=cfg.eps)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.base_lr, betas=tuple(cfg.adam_betas), eps=cfg.eps)
    raise ValueError(f"optim.name = {cfg.name!r}: no base optimizer")


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.name == "lars":
        return LARS(groups, lr=cfg.base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                    eta=cfg.lars_eta, eps=cfg.lars_eps, clip=cfg.lars_clip,
                    style=cfg.momentum_style)
    if cfg.date:
        return DateBounded(groups, lambda inner: _base_optimizer(inner, cfg),
                           lower=cfg.date_lower, upper=cfg.date_upper, lr=cfg.base_lr)
    if cfg.name == "sgd" and cfg.momentum_style == "pytorch":
        # the default path: PyTorch's own SGD (fused loops), the same update as MomentumSGD
        return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov)
    return _base_optimizer(groups, cfg)


def clip_before_update(optimizer: torch.optim.Optimizer, params: list, max_norm: float):
    """Clip the gradients' global norm to ``max_norm`` just before the parameters move (a
    step pre-hook). Under DATE the hook sits on the base optimizer, so DATE's ratio
    (Algorithm 1 line 13) is taken from the unclipped gradient first."""
    def clip(*_) -> None:  # a pre-hook returns None (or replacement arguments)
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    mover = optimizer.inner if isinstance(optimizer, DateBounded) else optimizer
    return mover.register_step_pre_hook(clip)


def optimizer_stats(optimizer: torch.optim.Optimizer) -> dict:
    """What the train log records of the optimizer itself: DATE's ratio distribution."""
    if isinstance(optimizer, DateBounded):
        return {"date_ratio": optimizer.ratio_summary()}
    return {}


def apply_schedule_(optimizer: torch.optim.Optimizer, point) -> None:
    """Set the LR of every group and the weight decay of the groups that decay."""
    for group in optimizer.param_groups:
        group["lr"] = point.lr
        if group["decays"]:
            group["weight_decay"] = point.weight_decay
