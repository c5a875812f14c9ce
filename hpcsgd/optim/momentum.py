"""Momentum SGD with selectable momentum semantics: Caffe's or PyTorch's.

Caffe (Intel Caffe, NVCaffe; You et al. 3.2.3 write LARS this way), the velocity accumulates
LR-scaled updates:
    v <- mu v + lr * d;          w <- w - v
PyTorch (torch.optim.SGD), the LR multiplies the velocity:
    v <- mu v + d;               w <- w - lr * v
(d = gradient + weight_decay * w, times any per-layer factor such as the LARS trust ratio.)

With a constant LR the two are the same optimizer (v_caffe = lr * v_pytorch). They differ when
the LR changes, i.e. in every warmup and decay: Caffe's velocity still carries the old LRs for
about 1 / (1 - mu) iterations (a 10x LR drop takes effect gradually; a warmup runs behind its
schedule). Goyal et al. (2017, 2.2, "momentum correction") rescale Caffe's velocity by
lr_new / lr_old whenever the LR changes, which is exactly the PyTorch form; Codreanu et al.
(II) used that correction. So "pytorch" = Caffe with Goyal's momentum correction, and "caffe"
= the uncorrected solver. tests/unit/test_optim.py checks both statements.

Nesterov, Caffe form (NesterovSolver): v' = mu v + lr d; w <- w - ((1 + mu) v' - mu v).
Nesterov, PyTorch form: v' = mu v + d; w <- w - lr (d + mu v').
"""
from __future__ import annotations

import torch

from hpcsgd.config.choices import MomentumStyle, choices

MOMENTUM_STYLES = choices(MomentumStyle)  # the option's words, typed once in hpcsgd/config/choices.py


@torch.no_grad()
def momentum_update_(param: torch.Tensor, d_p: torch.Tensor, state: dict, *, lr: float,
                     momentum: float, nesterov: bool = False, style: str = "pytorch",
                     scale: float = 1.0) -> None:
    """One momentum-SGD update of ``param`` along ``d_p`` in place.

    ``scale`` is a per-layer factor (LARS trust ratio, DATE's bounded ratio) applied to the
    direction before it enters the velocity, so the global ``lr`` alone is what Caffe's
    velocity remembers and what the PyTorch form applies to the whole velocity.
    """
    if style not in MOMENTUM_STYLES:
        raise ValueError(f"momentum style {style!r}: must be one of {', '.join(MOMENTUM_STYLES)}")
    if momentum == 0.0:
        param.add_(d_p, alpha=-lr * scale)
        return
    buf = state.get("momentum_buffer")
    if style == "pytorch":
        if buf is None:
            buf = state["momentum_buffer"] = (d_p * scale).detach().clone()
        else:
            buf.mul_(momentum).add_(d_p, alpha=scale)
        step = d_p.mul(scale).add_(buf, alpha=momentum) if nesterov else buf
        param.add_(step, alpha=-lr)
        return
    if buf is None:
        buf = state["momentum_buffer"] = torch.zeros_like(param)
    previous = buf.clone() if nesterov else None
    buf.mul_(momentum).add_(d_p, alpha=lr * scale)
    if nesterov:
        param.add_(buf, alpha=-(1.0 + momentum)).add_(previous, alpha=momentum)
    else:
        param.sub_(buf)


def closure_loss(closure):
    """The loss of an optimizer step's ``closure`` (None without one), computed with autograd
    on: ``step()`` runs under ``no_grad`` and the closure must be able to call backward."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class MomentumSGD(torch.optim.Optimizer):
    """SGD with momentum, L2 weight decay and Nesterov, in Caffe or PyTorch momentum form.

    Args:
        params: parameters or param groups (groups may carry ``layer_scale``, a per-layer
            factor set by DATE each step; default 1).
        lr: global learning rate (the schedule sets it every step).
        momentum: mu in [0, 1).
        weight_decay: L2 coefficient added to the gradient.
        nesterov: Nesterov momentum (needs momentum > 0).
        style: "pytorch" or "caffe" (module docstring).
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, style: str = "pytorch", **extra_defaults):
        if lr < 0:
            raise ValueError(f"lr = {lr!r}: must be >= 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum = {momentum!r}: must be in [0, 1)")
        if weight_decay < 0:
            raise ValueError(f"weight_decay = {weight_decay!r}: must be >= 0")
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if style not in MOMENTUM_STYLES:
            raise ValueError(f"style = {style!r}: must be one of {', '.join(MOMENTUM_STYLES)}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, style=style, **extra_defaults))

    def layer_scale(self, param: torch.Tensor, group: dict) -> float:
        """Per-layer factor on the direction; LARS overrides it."""
        return group.get("layer_scale", 1.0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            wd = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                scale = self.layer_scale(p, group)
                d_p = p.grad.add(p, alpha=wd) if wd else p.grad
                momentum_update_(p, d_p, self.state[p], lr=group["lr"],
                                 momentum=group["momentum"], nesterov=group["nesterov"],
                                 style=group["style"], scale=scale)
        return loss
