"""Scaling a baseline recipe (batch B0, learning rate lr0, warmup w0) to a batch B.

Pure functions of numbers; the schedule plan (hpcsgd/schedule/plan.py) calls them once per run.

- Linear rule (Krizhevsky; Goyal et al.): lr = lr0 * B / B0.
- Sqrt rule (Krizhevsky; DATE 3.3): lr = lr0 * sqrt(B / B0), keeps the variance of the
  gradient estimate constant.
- LEGW (DATE 3.1, Algorithm 1 line 1): warmup epochs w = w0 * B / B0, i.e. the number of
  warmup *iterations* stays the one of the baseline.
"""
from __future__ import annotations

import math

from hpcsgd.config.choices import LRScaling, choices

LR_SCALING_RULES = choices(LRScaling)  # the option's words, typed once in hpcsgd/config/choices.py


def batch_ratio(batch: int, base_batch: int) -> float:
    """k = B / B0, refusing a baseline that cannot be one."""
    if base_batch <= 0:
        raise ValueError(f"base_batch = {base_batch!r}: must be > 0 to scale from a baseline")
    if batch <= 0:
        raise ValueError(f"batch = {batch!r}: must be > 0")
    return batch / base_batch


def scaled_lr(base_lr: float, *, batch: int, base_batch: int, rule: str) -> float:
    """The peak LR for batch B from lr0 at B0: "linear" (x k), "sqrt" (x sqrt k), "none" (lr0)."""
    if rule == "none":
        return base_lr
    k = batch_ratio(batch, base_batch)
    if rule == "linear":
        return base_lr * k
    if rule == "sqrt":
        return base_lr * math.sqrt(k)
    raise ValueError(f"LR scaling rule {rule!r}: must be one of {', '.join(LR_SCALING_RULES)}")


def legw_warmup_epochs(base_warmup_epochs: float, *, batch: int, base_batch: int) -> float:
    """LEGW: warmup epochs grow linearly with the batch (DATE Algorithm 1 line 1: w = B w0 / B0)."""
    return base_warmup_epochs * batch_ratio(batch, base_batch)
