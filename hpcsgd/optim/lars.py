"""LARS: Layer-wise Adaptive Rate Scaling (You, Gitman, Ginsburg 2017, section 3.2.3).

For every layer (every parameter tensor: a layer's weights and its bias are separate, as in
the paper's Table 4), in the paper's order:
    (1) local LR   alpha = eta * ||w|| / (||g|| + beta * ||w||)
        (the text prints beta * ||grad w||; the weight-decay term is beta * ||w||, a typo)
    (2) layer LR   gamma * alpha                (gamma: the global LR the schedule sets)
    (3) g <- g + beta * w                       (weight decay after the ratio)
    (4) a <- mu a + gamma * alpha * g           (Caffe form; hpcsgd/optim/momentum.py for PyTorch's)
    (5) w <- w - a
eta is the trust coefficient (0.001 in the paper), beta the weight decay, mu the momentum.

- A zero ||w|| (fresh zero-initialised layer) or zero ||g|| gives trust ratio 1: the layer
  takes the global LR (nothing to compare against).
- ``clip``: NVCaffe's LARC "clip" policy, layer LR = min(gamma, alpha) instead of gamma *
  alpha: alpha only caps the global LR.
- ``eps`` is added to the denominator (0 in the paper).
- Groups with ``layerwise = False`` (BatchNorm parameters and biases with
  ``optim.layerwise_bn_bias = false``, the MLPerf-style exclusion, hpcsgd/optim/build.py) are plain
  momentum SGD with the global LR. By default every tensor takes its ratio, as in the paper.
"""
from __future__ import annotations

import torch

from hpcsgd.optim.momentum import MOMENTUM_STYLES, MomentumSGD


def lars_local_lr(w_norm: float, g_norm: float, *, eta: float, weight_decay: float,
                  eps: float = 0.0) -> float | None:
    """alpha = eta ||w|| / (||g|| + beta ||w|| + eps); None when a norm is zero (ratio 1)."""
    if w_norm == 0.0 or g_norm == 0.0:
        return None
    return eta * w_norm / (g_norm + weight_decay * w_norm + eps)


def lars_factor(w_norm: float, g_norm: float, *, lr: float, eta: float, weight_decay: float,
                eps: float = 0.0, clip: bool = False) -> float:
    """Layer LR / global LR: alpha ("scale"), or min(1, alpha / lr) (LARC "clip"); 1 when a
    norm is zero."""
    alpha = lars_local_lr(w_norm, g_norm, eta=eta, weight_decay=weight_decay, eps=eps)
    if alpha is None:
        return 1.0
    if clip:
        return min(1.0, alpha / lr) if lr > 0 else 1.0
    return alpha


def lars_layer_lr(w_norm: float, g_norm: float, *, lr: float, eta: float, weight_decay: float,
                  eps: float = 0.0, clip: bool = False) -> float:
    """The true LR of one layer: gamma * alpha (or min(gamma, alpha) with clip)."""
    return lr * lars_factor(w_norm, g_norm, lr=lr, eta=eta, weight_decay=weight_decay,
                            eps=eps, clip=clip)


class LARS(MomentumSGD):
    """LARS as a ``torch.optim.Optimizer`` (module docstring for the update).

    Args:
        params: parameters or param groups; a group with ``layerwise = False`` skips LARS.
        lr: global LR gamma (the schedule sets it every step).
        momentum: mu.
        weight_decay: beta, in the ratio and added to the gradient after it.
        eta: trust coefficient (0.001).
        eps: added to the ratio's denominator.
        clip: NVCaffe LARC "clip" policy.
        style: momentum form, "pytorch" or "caffe" (equal at constant gamma).
    """

    def __init__(self, params, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001, eps: float = 0.0, clip: bool = False,
                 style: str = "pytorch"):
        if eta <= 0:
            raise ValueError(f"eta = {eta!r}: must be > 0")
        if eps < 0:
            raise ValueError(f"eps = {eps!r}: must be >= 0")
        if style not in MOMENTUM_STYLES:
            raise ValueError(f"style = {style!r}: must be one of {', '.join(MOMENTUM_STYLES)}")
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         nesterov=False, style=style, eta=eta, eps=eps, clip=clip,
                         layerwise=True)

    @torch.no_grad()
    def layer_scale(self, param: torch.Tensor, group: dict) -> float:
        if not group["layerwise"]:
            factor = 1.0
        else:
            # the ratio uses the raw gradient; weight decay is added after it (paper step 3)
            factor = lars_factor(float(param.norm()), float(param.grad.norm()), lr=group["lr"],
                                 eta=group["eta"], weight_decay=group["weight_decay"],
                                 eps=group["eps"], clip=group["clip"])
        self.state[param]["layer_lr"] = group["lr"] * factor  # for logs; not used by the update
        return factor
