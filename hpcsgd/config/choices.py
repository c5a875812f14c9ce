"""Every option that takes one of a fixed set of words, typed once as a Literal.

The TOML/CLI coercion (load.py) refuses any other value, naming the option and the choices;
the code that acts on a choice reads its list from here (``choices(Decay)``) instead of
keeping a copy. Choices that depend on what is installed (model names, node presets, the
allocator's library path) are plain strings checked by their section.
"""
from __future__ import annotations

import typing
from typing import Literal

from hpcsgd.config.errors import refuse

DataName = Literal["fashion-mnist", "imagenet"]
OptimName = Literal["sgd", "lars", "adagrad", "rmsprop", "adam"]
MomentumStyle = Literal["pytorch", "caffe"]
LRScaling = Literal["none", "linear", "sqrt"]
Warmup = Literal["linear", "constant", "quadratic"]
Decay = Literal["poly", "cosine", "multistep", "constant", "roller_coaster", "cyclic"]
RollerCoasterWarmup = Literal["run", "baseline"]
Nonfinite = Literal["stop", "skip", "ignore"]
Precision = Literal["auto", "fp32", "bf16"]
Compile = Literal["auto", "on", "off"]
CommBackend = Literal["mpi", "gloo", "ccl"]
WireDtype = Literal["float32", "bfloat16"]
Hierarchical = Literal["auto", "on", "off"]
Memory = Literal["default", "hbm"]
Corpus = Literal["ptb"]
LMSplit = Literal["valid", "test"]


def choices(literal) -> tuple[str, ...]:
    """The words a Literal choice type admits, in order."""
    return typing.get_args(literal)


def is_choice(typ) -> bool:
    return typing.get_origin(typ) is Literal


def check_choice(option: str, value, literal) -> None:
    """Refuse a value that is not one of the choice's words, naming the option and them all."""
    if value not in choices(literal):
        refuse(option, value, "must be one of " + ", ".join(repr(c) for c in choices(literal)))
