"""Learning-rate schedules as pure functions of the (fractional) epoch.

``lr_at(epoch)``: gradual linear warmup (Goyal et al. 2.2) from ``warmup_start_lr`` to the
peak ``base_lr`` over ``warmup_epochs``, then a decay over the remaining epochs:
poly (power 1 = Codreanu et al. IV-D's linear decay, power 2 = You et al.), cosine,
multistep (Goyal: x0.1 at 30, 60, 80) or constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hpcsgd.config import Config, ScheduleConfig


def linear_warmup(epoch: float, *, warmup_epochs: float, start_lr: float, peak_lr: float) -> float:
    return start_lr + (peak_lr - start_lr) * min(epoch / warmup_epochs, 1.0)


def poly(progress: float, *, power: float, peak_lr: float, end_lr: float = 0.0) -> float:
    """progress in [0, 1] -> LR falling from peak_lr to end_lr as (1 - progress)^power."""
    return end_lr + (peak_lr - end_lr) * (1.0 - min(max(progress, 0.0), 1.0)) ** power


def cosine(progress: float, *, peak_lr: float, end_lr: float = 0.0) -> float:
    return end_lr + 0.5 * (peak_lr - end_lr) * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def multistep(epoch: float, *, peak_lr: float, milestones, gamma: float) -> float:
    return peak_lr * gamma ** sum(epoch >= m for m in milestones)


def lr_at(epoch: float, cfg: ScheduleConfig, *, base_lr: float, total_epochs: float) -> float:
    if epoch < cfg.warmup_epochs:
        return linear_warmup(epoch, warmup_epochs=cfg.warmup_epochs,
                             start_lr=cfg.warmup_start_lr, peak_lr=base_lr)
    progress = (epoch - cfg.warmup_epochs) / (total_epochs - cfg.warmup_epochs)
    if cfg.decay == "poly":
        return poly(progress, power=cfg.power, peak_lr=base_lr, end_lr=cfg.end_lr)
    if cfg.decay == "cosine":
        return cosine(progress, peak_lr=base_lr, end_lr=cfg.end_lr)
    if cfg.decay == "multistep":
        return multistep(epoch, peak_lr=base_lr, milestones=cfg.milestones, gamma=cfg.gamma)
    if cfg.decay == "constant":
        return base_lr
    raise ValueError(f"schedule.decay = {cfg.decay!r}: unknown")


@dataclass(frozen=True)
class SchedulePoint:
    """Everything the schedule sets at one moment of training."""
    lr: float
    weight_decay: float
    collapse: bool = False
    """Codreanu et al. V-B2 collapse phase: the data path turns scale/aspect augmentation off."""


class Schedule:
    """The run's schedule: ``at(epoch)`` for any fractional epoch (a pure function of it)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def at(self, epoch: float) -> SchedulePoint:
        lr = lr_at(epoch, self.cfg.schedule, base_lr=self.cfg.optim.base_lr,
                   total_epochs=self.cfg.train.epochs)
        return SchedulePoint(lr=lr, weight_decay=self.cfg.optim.weight_decay)


def build_schedule(cfg: Config) -> Schedule:
    return Schedule(cfg)
