"""DATE's dynamic per-layer stabilised learning (You et al. 2019, section 3.5, Algorithm 1).

For every layer, each step (Algorithm 1 lines 12-16):
    r = min{max{||w|| / ||g||, lower}, upper}       (r = min{max{1, lower}, upper} if a norm is 0)
and the base optimizer (SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam) updates the layer
with LR eta * r. Unlike LARS there is no weight decay inside the ratio and no trust
coefficient; the bounds keep adaptive solvers, which already favour layers with small
gradients, from being pushed further (DATE's RMSProp example: 21.8% -> 1.0% error at 8K).

The paper calls the bounds dynamic but publishes neither their values nor how they move;
here they are constants from the config (optim.date_lower / date_upper), which the schedule
could drive like any group option.

r is taken from the gradient as the step receives it. Where the trainer clips gradients (the
LSTM), the clipping runs after r is taken, on the base optimizer (hpcsgd.optim.build.
clip_before_update): Algorithm 1 computes r from g_t, and a clipped g made every LSTM matrix
hit the upper bound (||w|| / 0.25 >> 10), which reduced DATE to sqrt scaling x upper.

How r is applied: for momentum SGD it scales the direction entering the velocity (the same
place as the LARS trust ratio, hpcsgd/optim/momentum.py), so the two momentum forms stay equal at
a constant LR; for AdaGrad, RMSProp and Adam, which normalise the gradient's scale away, it
multiplies the step's LR.
"""
from __future__ import annotations

from typing import Callable

import torch

from hpcsgd.optim.momentum import MomentumSGD, closure_loss


def raw_ratio(w_norm: float, g_norm: float) -> float:
    """DATE's layer ratio ||w|| / ||g|| before its bounds (Algorithm 1, line 13); 1 when a
    norm is zero (the paper is silent: a tensor at zero or without a gradient is not scaled)."""
    return w_norm / g_norm if w_norm > 0.0 and g_norm > 0.0 else 1.0


def bound_ratio(raw: float, *, lower: float, upper: float) -> float:
    """DATE's bounds on a raw ratio (Algorithm 1, lines 14-16)."""
    return min(max(raw, lower), upper)


def date_ratio(w_norm: float, g_norm: float, *, lower: float, upper: float) -> float:
    """DATE's bounded layer ratio (Algorithm 1, lines 13-16)."""
    return bound_ratio(raw_ratio(w_norm, g_norm), lower=lower, upper=upper)


def _quantiles(ratios: list[float]) -> dict:
    """min, p10, p50, p90 and max of sorted values (the lower order statistic)."""
    def quantile(q: float) -> float:
        return ratios[min(len(ratios) - 1, int(q * len(ratios)))]
    return {"min": ratios[0], "p10": quantile(0.1), "p50": quantile(0.5), "p90": quantile(0.9),
            "max": ratios[-1]}


class DateBounded(torch.optim.Optimizer):
    """DATE's bounded ratio on top of a base optimizer.

    The outer param groups are the ones the schedule drives (``lr``, ``weight_decay``, and the
    ``layerwise`` flag: groups without it keep ratio 1). The base optimizer is built by
    ``make_inner`` over one group per parameter, so each layer can get its own ratio.

    Args:
        params: param groups (as from hpcsgd.optim.build.param_groups).
        make_inner: list of per-parameter groups -> base optimizer.
        lower, upper: bounds of the ratio.
    """

    def __init__(self, params, make_inner: Callable[[list[dict]], torch.optim.Optimizer], *,
                 lower: float, upper: float, lr: float = 0.1, weight_decay: float = 0.0):
        if not 0.0 <= lower <= upper:
            raise ValueError(f"DATE bounds [{lower!r}, {upper!r}]: need 0 <= lower <= upper")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, layerwise=True,
                                      lower=lower, upper=upper))
        inner_groups, self._links = [], []
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                self._links.append((gi, pi, len(inner_groups)))
                inner_groups.append({"params": [p], "lr": group["lr"],
                                     "weight_decay": group["weight_decay"]})
        self.inner = make_inner(inner_groups)
        # momentum SGD takes r inside the velocity; adaptive solvers take it on the LR
        self._ratio_on_direction = isinstance(self.inner, MomentumSGD)
        self.last_ratios: list[float] = [1.0] * len(self._links)
        self.last_raw: list[float] = [1.0] * len(self._links)  # before the bounds (the log's)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for k, (gi, pi, ii) in enumerate(self._links):
            group, inner = self.param_groups[gi], self.inner.param_groups[ii]
            p = group["params"][pi]
            r = raw = 1.0
            if group["layerwise"] and p.grad is not None:
                # raw gradient: no weight decay inside DATE's ratio
                raw = raw_ratio(float(p.norm()), float(p.grad.norm()))
                r = bound_ratio(raw, lower=group["lower"], upper=group["upper"])
            self.last_ratios[k], self.last_raw[k] = r, raw
            inner["weight_decay"] = group["weight_decay"]
            if self._ratio_on_direction:
                inner["lr"], inner["layer_scale"] = group["lr"], r
            else:
                inner["lr"] = group["lr"] * r
        self.inner.step()
        return loss

    def ratio_summary(self) -> dict:
        """Distribution of the last step's ratios over the layer tensors (those that take
        one), for the train log: the applied ratio's quantiles and the fractions pinned at
        either bound, and the raw ratio's quantiles (raw_*: how far beyond a bound it went)."""
        layer = [k for k, (gi, _, _) in enumerate(self._links)
                 if self.param_groups[gi]["layerwise"]]
        if not layer:
            return {}
        lower, upper = self.defaults["lower"], self.defaults["upper"]
        applied = _quantiles(sorted(self.last_ratios[k] for k in layer))
        raw = _quantiles(sorted(self.last_raw[k] for k in layer))
        return {**applied, **{f"raw_{q}": v for q, v in raw.items()},
                "at_lower": sum(self.last_ratios[k] <= lower for k in layer) / len(layer),
                "at_upper": sum(self.last_ratios[k] >= upper for k in layer) / len(layer)}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["inner"] = self.inner.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        if "inner" not in state_dict:
            raise ValueError("not a DateBounded state dict (no 'inner' optimizer state)")
        inner = state_dict.pop("inner")
        super().load_state_dict(state_dict)
        self.inner.load_state_dict(inner)
