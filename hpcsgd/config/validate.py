"""Validation of the whole tree: each section's rules, the rules across sections, the world size.

Checks that need the world size (divisibility of the global batch) take it as an argument.
"""
from __future__ import annotations

import dataclasses

from hpcsgd.config.errors import _require
from hpcsgd.config.tree import Config


def validate(cfg: Config, world_size: int | None = None) -> None:
    """Each section's own rules, the rules across sections, and the world size when given."""
    for section in dataclasses.fields(cfg):
        getattr(cfg, section.name).check()
    t = cfg.train
    _require(cfg.schedule.warmup_epochs < t.epochs, "schedule.warmup_epochs",
             cfg.schedule.warmup_epochs, f"must be shorter than train.epochs = {t.epochs}: "
             f"set --schedule.warmup_epochs below {t.epochs:g} (or raise --train.epochs)")
    if world_size is not None:
        per_step = world_size * t.accumulation
        _require(t.global_batch % per_step == 0, "train.global_batch", t.global_batch,
                 f"must be divisible by ranks x accumulation = {world_size} x {t.accumulation}")


def local_batch(cfg: Config, world_size: int) -> int:
    """Images per rank per micro-batch (validated divisible)."""
    return cfg.train.global_batch // (world_size * cfg.train.accumulation)
