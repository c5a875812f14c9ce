"""Gradient fusion buckets: which parameters share one allreduce, and the flat fp32 buffer
their gradients are packed into.

Parameters are taken in the order backward produces their gradients (about the reverse of
definition order) so that the first bucket is complete, and its allreduce can start, while
backward still works on the earlier layers (Codreanu et al. II: ML-SL overlaps the backward
pass with communication).
"""
from __future__ import annotations

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


def is_dense(t: torch.Tensor) -> bool:
    """Contiguous or channels_last: the elements fill exactly numel() consecutive slots."""
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def flat_view(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of a dense tensor's memory, in memory order. Every rank holds the same
    layout, so raw memory lines up element by element across ranks."""
    if t.is_contiguous():
        return t.view(-1)
    if is_dense(t):
        return torch.as_strided(t, (t.numel(),), (1,), t.storage_offset())
    raise ValueError(f"collectives need a dense tensor, got shape {tuple(t.shape)} "
                     f"strides {t.stride()}")


class Bucket:
    """The gradients of `params` packed into one flat fp32 tensor; `views[j]` is params[j]'s
    slot, shaped and strided like the parameter so that it can be ``p.grad`` itself: then
    backward accumulates straight into the bucket and nothing is copied (see
    GradientReducer.zero_grad). The reducer divides the summed bucket by the world size."""

    def __init__(self, index: int, params: list[nn.Parameter], flat: torch.Tensor | None = None):
        """flat: the bucket's memory when the allreduce provides it (shared memory);
        default a private tensor."""
        self.index = index
        self.params = params
        self.numel = sum(p.numel() for p in params)
        self.flat = torch.empty(self.numel, dtype=torch.float32) if flat is None else flat
        if self.flat.numel() != self.numel or self.flat.dtype != torch.float32:
            raise ValueError(f"bucket {index}: needs {self.numel} fp32 values, got "
                             f"{self.flat.numel()} {self.flat.dtype}")
        self.views = self._views_over(self.flat)
        self._shared: tuple[int, list[torch.Tensor]] | None = None  # (data_ptr, views)
        self.ready = [False] * len(params)
        self.n_ready = 0
        self.handle = None
        self.mean: torch.Tensor | None = None  # where the averaged gradients are (blocking)

    def _views_over(self, flat: torch.Tensor) -> list[torch.Tensor]:
        views, offset = [], 0
        for p in self.params:
            stride = p.stride() if is_dense(p) else torch.empty(p.shape).stride()
            views.append(flat.as_strided(p.shape, stride, offset))
            offset += p.numel()
        return views

    @property
    def nbytes(self) -> int:
        return self.numel * 4

    @property
    def complete(self) -> bool:
        return self.n_ready == len(self.params)

    def fill_(self, j: int, grad: torch.Tensor | None) -> None:
        """Pack one gradient into its slot (nothing to do when ``p.grad`` is the slot) and
        mark it ready."""
        view = self.views[j]
        if grad is None:  # unused this step: contributes zeros, as DDP does
            view.zero_()
        elif grad.data_ptr() != view.data_ptr() or grad.stride() != view.stride():
            view.copy_(grad)
        self.ready[j] = True
        self.n_ready += 1

    def publish_(self, mean: torch.Tensor | None = None) -> None:
        """Make every parameter's .grad its slot (no copy when dtypes agree), or its place in
        `mean`: memory of the same size holding the averaged bucket, shared by the node's
        ranks (hierarchical allreduce with shared results), which must only be read."""
        views = self.views
        if mean is not None and mean.data_ptr() != self.flat.data_ptr():
            if self._shared is None or self._shared[0] != mean.data_ptr():
                self._shared = (mean.data_ptr(), self._views_over(mean))
            views = self._shared[1]
        for p, view in zip(self.params, views):
            if p.dtype == view.dtype:
                p.grad = view
            elif p.grad is None:
                p.grad = view.to(p.dtype)
            else:
                p.grad.copy_(view)

    def on_shared(self, j: int, grad: torch.Tensor | None) -> bool:
        """Whether `grad` is params[j]'s place in the shared result (see publish_)."""
        return (self._shared is not None and grad is not None and grad.numel() > 0
                and grad.data_ptr() == self._shared[1][j].data_ptr())

    def release_(self) -> None:
        """Give every parameter whose .grad is a slot of this bucket, or of its shared result,
        a private copy (before the bucket's memory goes away)."""
        ours = {v.data_ptr() for v in self.views}
        if self._shared is not None:
            ours |= {v.data_ptr() for v in self._shared[1]}
        for p in self.params:
            if p.grad is not None and p.grad.data_ptr() in ours:
                p.grad = p.grad.clone()

    def reset(self) -> None:
        self.ready = [False] * len(self.params)
        self.n_ready = 0
        self.handle = None
        self.mean = None
