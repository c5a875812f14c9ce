"""The compute path of one rank: threads, memory layout, precision and compilation.

PyTorch's oneDNN kernels do the work (Intel Extension for PyTorch is archived). Options,
each measured on ResNet-50 by tools/bench_compute.py (docs/compute.md):
- channels_last: NHWC activations, oneDNN's native convolution layout;
- precision "bf16": autocast to bfloat16 for convolutions and matrix products, fp32 master
  weights, optimizer and loss (needs AVX512-BF16 or AMX for speed);
- compile: torch.compile (Inductor, C++ codegen) of the model.
"""
from __future__ import annotations

import contextlib
import functools
import os

import torch
import torch.nn as nn

from hpcsgd.config import ComputeConfig


def compute_threads(cfg: ComputeConfig, local_size: int) -> int:
    """Configured threads, or this rank's cores shared by the ranks of this node."""
    if cfg.threads:
        return cfg.threads
    return max(1, len(os.sched_getaffinity(0)) // local_size)


def prepare_model(model: nn.Module, cfg: ComputeConfig) -> nn.Module:
    """Layout (in place) and, if asked, the compiled module that runs the forward pass. The
    returned module shares parameters with `model`: optimizers and reducers use `model`."""
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if cfg.compile else model


def to_layout(images: torch.Tensor, cfg: ComputeConfig) -> torch.Tensor:
    if cfg.channels_last and images.dim() == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (/proc/cpuinfo) of bf16 arithmetic in hardware; without them oneDNN emulates
bf16 and fp32 is faster (KNL 7250 and Skylake 8160, the papers' nodes, have neither)."""


def native_bf16(cpuinfo: str | None = None) -> bool:
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), [])
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


@functools.cache
def _native_bf16_here() -> bool:
    return native_bf16()  # read once: autocast() asks at every forward pass


def precision(cfg: ComputeConfig) -> str:
    """The precision compute.precision means on this node: "auto" is bf16 where the CPU has
    it in hardware (2.2x fp32 on ResNet-50 here, docs/compute.md), else fp32."""
    if cfg.precision == "auto":
        return "bf16" if _native_bf16_here() else "fp32"
    return cfg.precision


def autocast(cfg: ComputeConfig):
    """Context for forward passes (and the loss) in the configured precision."""
    if precision(cfg) == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
