"""Validation of the whole tree, once, before any rank works: each section's rules, every
choice, the rules across sections (the schedule's plan with batch and epochs known), the
task's rules, and the world size when known. Every refusal names the option to change.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from hpcsgd.config.choices import check_choice, is_choice
from hpcsgd.config.errors import require
from hpcsgd.config.tree import Config

TASKS = ("image", "lm")
"""What a tree is validated for: the image trainer (hpcsgd.train) or the language model's
(hpcsgd.lm.train); None = only the rules every task shares (tools that read a job)."""


def validate(cfg: Config, world_size: int | None = None, task: str | None = None) -> None:
    """Raises ConfigError naming the first option that cannot run."""
    for section in dataclasses.fields(cfg):
        _check_section(section.name, getattr(cfg, section.name))
    from hpcsgd.schedule.plan import resolve_plan  # local: the schedule imports this package
    resolve_plan(cfg)  # warmup, collapse, branch and cycles against train.epochs and the batch
    resume = cfg.checkpoint.resume
    require(resume in ("", "auto") or Path(resume).is_file(), "checkpoint.resume", resume,
            "no such checkpoint file")
    if task is not None:
        _check_task(cfg, task)
    if world_size is not None:
        t = cfg.train
        require(t.global_batch % (world_size * t.accumulation) == 0, "train.global_batch",
                t.global_batch,
                f"must be divisible by ranks x accumulation = {world_size} x {t.accumulation}")


def _check_section(name: str, section) -> None:
    """Choices first (a tree built in Python skips the coercion that checks them), then the
    section's own rules."""
    for key, typ in typing.get_type_hints(type(section)).items():
        if is_choice(typ):
            check_choice(f"{name}.{key}", getattr(section, key), typ)
    section.check()


def _check_task(cfg: Config, task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    if task == "image":
        require(cfg.model.name != "lstm_lm", "model.name", cfg.model.name,
                "a language model, trained by hpcsgd lm (python -m hpcsgd.lm.train), not by "
                "the image trainer")
    else:
        require(cfg.model.name == "lstm_lm", "model.name", cfg.model.name,
                "the language-model trainer trains 'lstm_lm' (sizes in [lm])")
        require(cfg.train.accumulation == 1, "train.accumulation", cfg.train.accumulation,
                "must be 1 for the language model (streams carry their hidden state)")


def local_batch(cfg: Config, world_size: int) -> int:
    """Images per rank per micro-batch (validated divisible)."""
    return cfg.train.global_batch // (world_size * cfg.train.accumulation)
