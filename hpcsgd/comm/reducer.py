"""Gradient averaging across ranks on flat buckets, and replica-consistency helpers.

``BlockingReducer`` runs after the last micro-batch's backward: it copies the gradients into
flat buckets of about ``bucket_mb`` each, sums every bucket with one allreduce, divides by
the world size and copies back. The overlapped engine (allreduce during backward, on the
communication cores) replaces it behind the same ``synchronize()`` call.
"""
from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import torch
import torch.nn as nn


def make_buckets(params: list[nn.Parameter], bucket_bytes: int) -> list[list[nn.Parameter]]:
    """Consecutive parameters grouped so each bucket holds about bucket_bytes (at least one)."""
    buckets, current, size = [], [], 0
    for p in params:
        current.append(p)
        size += p.numel() * p.element_size()
        if size >= bucket_bytes:
            buckets.append(current)
            current, size = [], 0
    if current:
        buckets.append(current)
    return buckets


class BlockingReducer:
    def __init__(self, model: nn.Module, backend, *, world_size: int, bucket_mb: float):
        params = [p for p in model.parameters() if p.requires_grad]
        # backward produces gradients roughly in reverse order of definition
        self.buckets = make_buckets(params[::-1], int(bucket_mb * 2**20))
        self.flat = [torch.empty(sum(p.numel() for p in b), dtype=torch.float32)
                     for b in self.buckets]
        self.backend = backend
        self.world_size = world_size

    def no_sync(self):
        """Context for the backward passes of all micro-batches but the last (accumulation):
        gradients accumulate locally and are reduced once, after the last one."""
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        """Average every gradient over the ranks (sync point: waits for all allreduces)."""
        for bucket, flat in zip(self.buckets, self.flat):
            offset = 0
            for p in bucket:
                n = p.numel()
                if p.grad is None:  # unused this step: contributes zeros, as DDP does
                    flat[offset:offset + n].zero_()
                else:
                    flat[offset:offset + n].copy_(p.grad.reshape(-1))
                offset += n
            self.backend.allreduce_sum_(flat)
            flat.div_(self.world_size)
            offset = 0
            for p in bucket:
                n = p.numel()
                if p.grad is None:
                    p.grad = torch.empty_like(p)
                p.grad.copy_(flat[offset:offset + n].view_as(p))
                offset += n


@torch.no_grad()
def broadcast_state_(model: nn.Module, backend, root: int = 0) -> None:
    """Every rank starts from rank root's parameters and buffers."""
    for t in list(model.parameters()) + list(model.buffers()):
        backend.broadcast_(t.data, root)


@torch.no_grad()
def average_buffers_(model: nn.Module, backend, world_size: int) -> None:
    """Average floating buffers (BatchNorm running statistics, computed per rank from the
    rank's own batches) so that evaluation and checkpoints use one consistent model."""
    for b in model.buffers():
        if b.is_floating_point():
            backend.allreduce_sum_(b.data).div_(world_size)


def parameter_digest(model: nn.Module) -> str:
    """Hash of every parameter's exact bytes: equal digests mean bitwise-identical replicas."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(np.ascontiguousarray(p.detach().numpy()).tobytes())
    return h.hexdigest()[:16]


def check_replicas(model: nn.Module, world) -> None:
    """Raise naming the ranks whose parameters differ from rank 0's (collective)."""
    digests = world.comm.allgather(parameter_digest(model))
    bad = [r for r, d in enumerate(digests) if d != digests[0]]
    if bad:
        raise RuntimeError(f"replicas diverged: parameters of ranks {bad} differ from rank 0's")
