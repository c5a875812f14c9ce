"""bf16 on the wire, fp32 accumulation: half the bytes of an fp32 allreduce.

MPI's built-in SUM does not know bf16, and summing in bf16 would round after every addition.
Instead the allreduce is done as its two halves with our own reduction in between:
  1. every rank rounds its fp32 buffer to bf16 (round to nearest even) and splits it into
     `size` equal chunks; an alltoall gives rank j every rank's chunk j (reduce-scatter);
  2. rank j sums those chunks in fp32, in rank order 0..size-1, and rounds the sum to bf16
     once (each element is summed by exactly one rank, so every replica gets the same bits);
  3. an allgather of the bf16 sums gives every rank the whole result, widened back to fp32.
Each rank sends (size-1)/size of the buffer twice, as a ring allreduce does, at 2 bytes per
element instead of 4.

Error (documented, tested): with u = 2^-8 (bf16 keeps 8 significant bits) each input is
rounded once (relative error <= u), the fp32 sum of `size` terms adds at most about
(size-1)·2^-24 relative to the sum of magnitudes, and the result is rounded once more, so
elementwise (normal numbers; values below 2^-126 round to absolute precision instead)
    |result - sum_r x_r| <= (2u + u^2 + size·2^-24·(1+u)^2) · sum_r |x_r|   (about 2^-7).
"""
from __future__ import annotations

import math

import torch

BF16_UNIT_ROUNDOFF = 2.0 ** -8


def bf16_sum_error_bound(abs_sum: torch.Tensor, size: int) -> torch.Tensor:
    """Elementwise bound on |bf16-wire sum - exact sum| given sum_r |x_r| (see module doc)."""
    u = BF16_UNIT_ROUNDOFF
    return (2 * u + u * u + size * 2.0 ** -24 * (1 + u) ** 2) * abs_sum


def chunk_elems(n: int, size: int) -> int:
    """Elements per rank's chunk when n elements are split over size ranks (zero-padded)."""
    return math.ceil(n / size) if n else 0


class BF16Wire:
    """allreduce_sum_ of fp32 tensors through a backend's alltoall_ and allgather_ on bf16."""

    name = "bf16-wire"

    def __init__(self, backend):
        self.backend = backend
        self.size = backend.size
        self._scratch: dict[tuple, torch.Tensor] = {}

    def _buf(self, key: str, n: int, dtype: torch.dtype) -> torch.Tensor:
        t = self._scratch.get((key, dtype))
        if t is None or t.numel() < n:
            t = self._scratch[(key, dtype)] = torch.empty(n, dtype=dtype)
        return t[:n]

    def allreduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype != torch.float32 or not t.is_contiguous():
            raise TypeError("the bf16 wire reduces contiguous fp32 tensors "
                            f"(got {t.dtype}, strides {t.stride()})")
        size, n = self.size, t.numel()
        if size == 1 or n == 0:
            return t  # nothing travels, nothing is rounded
        c = chunk_elems(n, size)
        flat = t.view(-1)
        send = self._buf("send", size * c, torch.bfloat16)
        recv = self._buf("recv", size * c, torch.bfloat16)
        send[:n].copy_(flat)  # round to nearest even
        send[n:].zero_()
        self.backend.alltoall_(send, recv)
        acc = self._buf("acc", c, torch.float32)
        acc.copy_(recv[:c])
        for j in range(1, size):  # fixed order: deterministic, identical on every rank
            acc.add_(recv[j * c:(j + 1) * c])
        mine = self._buf("mine", c, torch.bfloat16)
        mine.copy_(acc)
        self.backend.allgather_(mine, send)
        flat.copy_(send[:n])
        return t
