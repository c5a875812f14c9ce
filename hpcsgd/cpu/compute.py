"""The compute path of one rank: threads, memory layout, precision and compilation.

PyTorch's oneDNN kernels do the work (Intel Extension for PyTorch is archived). Options,
each measured on ResNet-50 by tools/bench_compute.py (docs/compute.md):
- channels_last: NHWC activations, oneDNN's native convolution layout;
- precision "bf16": autocast to bfloat16 for convolutions and matrix products, fp32 master
  weights, optimizer and loss (needs AVX512-BF16 or AMX for speed);
- compile: torch.compile (Inductor, C++ codegen) of the model, by default only where measured
  to pay (compile_choice).
"""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from hpcsgd.config import ComputeConfig


def compute_threads(cfg: ComputeConfig, local_size: int) -> int:
    """Configured threads, or this rank's cores shared by the ranks of this node."""
    if cfg.threads:
        return cfg.threads
    return max(1, len(os.sched_getaffinity(0)) // local_size)


COMPILE_PAYS: frozenset[tuple[str, str]] = frozenset()
"""(model, precision) where torch.compile was measured faster for the whole trainer
(tools/bench_compute.py --compile, docs/compute.md); compute.compile = "auto" compiles only
these. None so far: with the default allocator (tcmalloc) the compiled ResNet-50 trainer was
slower than eager in fp32 + channels_last (0.935x at local batch 32, 0.961-0.968x at 16;
2026-12-06); only under the system allocator did it gain (1.036x), so the +23% measured
before the allocator (2026-11-21) was mostly allocation churn that Inductor's memory
planning avoided. bf16 was slower compiled too (17.3 against 18.8 img/s, 2026-11-21)."""


@dataclass(frozen=True)
class CompileChoice:
    """Whether this run compiles its model, why (for the banner), and Inductor's cache."""
    on: bool
    why: str
    cache: str = ""


def compile_choice(cfg: ComputeConfig, model_name: str, total_steps: int,
                   run_dir: Path) -> CompileChoice:
    """What compute.compile means for this run (pure: reads the environment only for a
    user's own TORCHINDUCTOR_CACHE_DIR)."""
    if cfg.compile == "off":
        return CompileChoice(False, "off (compute.compile = 'off')")
    if cfg.compile == "auto":
        key = (model_name, precision(cfg))
        if key not in COMPILE_PAYS:
            return CompileChoice(False, f"off (compute.compile = 'auto': not measured to pay "
                                        f"for {key[0]} in {key[1]})")
        if total_steps < cfg.compile_min_steps:
            return CompileChoice(False, f"off (compute.compile = 'auto': {total_steps} steps < "
                                        f"compute.compile_min_steps = {cfg.compile_min_steps})")
    cache = cfg.compile_cache or os.environ.get(_CACHE_ENV) or str(run_dir / "compile-cache")
    why = "on (compute.compile = 'on')" if cfg.compile == "on" else \
        f"on (compute.compile = 'auto': {model_name} in {precision(cfg)}, {total_steps} steps)"
    return CompileChoice(True, why, cache)


_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
"""Inductor reads its cache folder from here when it first needs it."""


def prepare_model(model: nn.Module, cfg: ComputeConfig,
                  compiling: CompileChoice | None = None) -> nn.Module:
    """Layout (in place) and, if chosen, the compiled module that runs the forward pass. The
    returned module shares parameters with `model`: optimizers and reducers use `model`.
    A compiled forward also compiles its backward (AOTAutograd) into one graph, so the
    gradients come out together at its end: the reducer's buckets start after backward
    instead of during it (docs/compute.md weighs this)."""
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if compiling is None or not compiling.on:
        return model
    # before the first compilation: Inductor (and its FX graph and AOTAutograd caches) keep
    # their files there, so a requeued job finds its kernels instead of compiling again
    Path(compiling.cache).mkdir(parents=True, exist_ok=True)
    os.environ[_CACHE_ENV] = compiling.cache
    return torch.compile(model)


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
