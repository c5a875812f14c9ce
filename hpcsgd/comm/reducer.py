"""Gradient averaging across ranks on flat buckets.

``GradientReducer`` (the default, comm.overlap = true) packs every gradient into its bucket
the moment backward has produced it (a post-accumulate-grad hook), and hands each full bucket
to the communication thread (hpcsgd/comm/engine.py), which allreduces it while backward goes
on with the earlier layers, as Intel ML-SL did (Codreanu et al. II, IV-E). ``synchronize()``
is the one sync point before the optimizer step: it waits for every bucket, after which each
``p.grad`` is a view of its averaged bucket slot (no copy back). ``zero_grad()`` zeroes the
buckets and keeps those views as the gradients, so the next backward accumulates straight
into the buckets: no gradient is copied on the compute threads, and the division by the
world size runs on the communication thread, after the sum (the hierarchical allreduce fuses
it into the node-local sum, before the leaders' sum) (DDP's gradient_as_bucket_view).
With ``gradients_read_only`` (a training loop that only reads the averaged gradients and
calls ``zero_grad()`` after the optimizer step) and the hierarchical allreduce, ``p.grad`` is
a view of the node's shared result instead: no rank copies the average back at all. Writing
into such a gradient changes it for every rank of the node: a backward pass that would
accumulate into it is refused (the hook sees it), in-place edits (clipping,
``optimizer.zero_grad(set_to_none=False)``) cannot be seen and must not be made.

Without an engine (``BlockingReducer``, comm.overlap = false) the same buckets are packed and
allreduced one after the other on the calling thread inside ``synchronize()``: the baseline
that the benchmarks compare against.

Rules: buckets are launched strictly in bucket order on every rank, so all ranks issue the
same collectives in the same order even if a gradient arrives out of order; under
``no_sync()`` (all micro-batches but the last, Caffe's iter_size) gradients accumulate locally
and nothing is sent; a gradient reported twice before ``synchronize()`` (two backward passes
without ``no_sync``) is an error, not a silent double count.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
import torch.nn as nn

from hpcsgd.comm.buckets import Bucket, make_buckets
from hpcsgd.comm.engine import Progress
from hpcsgd.comm.replicas import (average_buffers_, broadcast_state_, check_consistency,  # noqa: F401
                                  check_replicas, parameter_digest, weight_checksums)


class GradientReducer:
    def __init__(self, model: nn.Module, allreduce_, *, world_size: int, bucket_bytes: int,
                 engine=None, progress: Progress | None = None, closers=(), buffers=None,
                 average_=None, gradients_read_only: bool = False):
        """allreduce_(flat fp32 tensor): in-place sum over the ranks (a backend, the bf16
        wire or the hierarchical allreduce). average_(flat, divisor, share): the sum divided
        by divisor in one go, returning where the result is (flat, or with share the
        allreduce's own memory; default: allreduce_, then a division).
        gradients_read_only: the caller promises to modify no p.grad between synchronize()
        and zero_grad(), so that gradients may be shared memory. engine: the communication
        thread; None = run
        the allreduces on the caller's thread in synchronize() (blocking). closers: objects
        whose close() is called by close() (backends, watchdog, engine). buffers(sizes):
        the allreduce's own memory for the buckets (collective), e.g. shared memory."""
        self.model = model
        self.allreduce_ = allreduce_
        self.average_ = average_ or self._sum_then_divide_
        self.share = gradients_read_only
        self.world_size = world_size
        self.engine = engine
        self.progress = engine.progress if engine is not None else (progress or Progress())
        self._closers = list(closers)
        params = [p for p in model.parameters() if p.requires_grad]
        self._names = {p: n for n, p in model.named_parameters()}
        # backward produces gradients roughly in reverse order of definition
        groups = make_buckets(params[::-1], bucket_bytes)
        flats = buffers([sum(p.numel() for p in g) for g in groups],
                        shared_results=gradients_read_only) if buffers else \
            [None] * len(groups)
        self.buckets = [Bucket(i, ps, flat) for i, (ps, flat) in enumerate(zip(groups, flats))]
        self._slot = {p: (b, j) for b in self.buckets for j, p in enumerate(b.params)}
        self._sync = True
        self._next = 0  # first bucket not yet launched
        self.steps = 0
        self.wait_s = 0.0
        """Time the last synchronize() took: the communication left exposed after backward."""
        self._hooks = []
        self._closed = False
        if engine is not None:
            self._hooks = [p.register_post_accumulate_grad_hook(self._grad_ready)
                           for p in params]

    # ------------------------------------------------------------------ during backward

    def _grad_ready(self, p: nn.Parameter) -> None:
        """The post-accumulate-grad hook: p.grad is final for this step. Public as
        grad_ready for tools that produce gradients without a backward pass."""
        bucket, j = self._slot[p]
        self._check_not_shared(bucket, j, p)
        if not self._sync:
            return
        if bucket.ready[j]:
            raise RuntimeError(
                f"gradient of {self._names.get(p, 'a parameter')!r} was produced twice before "
                "synchronize(): run backward once per step, or wrap the earlier micro-batches "
                "in reducer.no_sync()")
        bucket.fill_(j, p.grad)
        if bucket.complete:
            self._launch_ready()

    grad_ready = _grad_ready

    def _check_not_shared(self, bucket: Bucket, j: int, p: nn.Parameter) -> None:
        if bucket.on_shared(j, p.grad):
            raise RuntimeError(
                f"gradient of {self._names.get(p, 'a parameter')!r} was accumulated into the "
                "node's shared average (gradients_read_only): every rank of the node reads that "
                "memory. Call reducer.zero_grad() after the optimizer step, not "
                "optimizer.zero_grad(), and modify no gradient in place")

    def _launch_ready(self) -> None:
        # strictly in bucket order: every rank issues the same collectives in the same order
        while self._next < len(self.buckets) and self.buckets[self._next].complete:
            self._launch(self.buckets[self._next])
            self._next += 1

    def _launch(self, bucket: Bucket) -> None:
        label = (f"step {self.steps} bucket {bucket.index + 1}/{len(self.buckets)} "
                 f"({bucket.nbytes / 2**20:.1f} MiB)")
        args = (bucket.flat, self.world_size, self.share)
        if self.engine is not None:
            bucket.handle = self.engine.submit(self.average_, *args, label=label)
        else:
            self.progress.enter(label)
            try:
                bucket.mean = self.average_(*args)
            finally:
                self.progress.leave()

    def _sum_then_divide_(self, flat: torch.Tensor, divisor: int, share: bool) -> torch.Tensor:
        """Sum over the ranks, then divide (on the communication thread when there is one).
        Exact mean up to fp32 summation rounding; bit-identical to dividing first when the
        world size is a power of two."""
        self.allreduce_(flat)
        if divisor != 1:
            # numpy, not torch: one thread, GIL released; torch's div_ would start an OpenMP
            # team of its own on the communication cores
            np.divide(flat.numpy(), divisor, out=flat.numpy())
        return flat

    # ------------------------------------------------------------------ the sync point

    @contextlib.contextmanager
    def no_sync(self):
        """For the backward passes of all micro-batches but the last (accumulation):
        gradients accumulate locally and are reduced once, after the last one."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    def synchronize(self) -> None:
        """Average every gradient over the ranks. Gradients backward did not report (unused
        parameters, or accumulated under no_sync only) are packed now; None counts as 0."""
        if not self._sync:
            raise RuntimeError("synchronize() called inside no_sync()")
        t0 = time.perf_counter()
        if self._closed:
            raise RuntimeError("synchronize() after close()")
        self._check_no_new_parameters()
        for bucket in self.buckets[self._next:]:
            for j, p in enumerate(bucket.params):
                if not bucket.ready[j]:
                    self._check_not_shared(bucket, j, p)
                    bucket.fill_(j, p.grad)
        self._launch_ready()  # blocking reducer: every allreduce runs here
        for bucket in self.buckets:  # waits for every bucket's allreduce (sync point)
            if bucket.handle is not None:
                bucket.mean = bucket.handle.wait()
        self.wait_s = time.perf_counter() - t0
        for bucket in self.buckets:
            bucket.publish_(bucket.mean)
            bucket.reset()
        self._next = 0
        self.steps += 1

    def _check_no_new_parameters(self) -> None:
        """A parameter that got requires_grad after the buckets were made has a gradient no
        bucket averages: each rank would step it alone (the replicas drift apart silently
        until the final check). Refuse it at the first step it has a gradient."""
        for name, p in self.model.named_parameters():
            if p.requires_grad and p.grad is not None and p not in self._slot:
                raise RuntimeError(
                    f"parameter {name!r} has requires_grad = True but was frozen when the "
                    "gradient reducer was built, so its gradient would never be averaged: "
                    "set requires_grad before build_reducer (unfreezing needs a new reducer)")

    def zero_grad(self) -> None:
        """Zero the buckets and make every gradient its bucket slot, in place of
        ``optimizer.zero_grad()``: the next backward then accumulates into the buckets."""
        if self._closed:
            raise RuntimeError("zero_grad() after close(): the buckets' memory is gone")
        for bucket in self.buckets:
            bucket.flat.zero_()
            bucket.publish_()

    @property
    def bucket_sizes(self) -> list[int]:
        return [b.nbytes for b in self.buckets]

    def close(self) -> None:
        """Remove the hooks and stop the communication thread and watchdog (collective)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        for bucket in self.buckets:  # the gradients outlive the buckets' (shared) memory
            bucket.release_()
        for c in self._closers:
            c.close()
        self._closers = []
        self._closed = True


class BlockingReducer(GradientReducer):
    """Pack and allreduce every bucket inside synchronize(), on the calling thread."""

    def __init__(self, model: nn.Module, backend, *, world_size: int, bucket_mb: float,
                 progress: Progress | None = None):
        super().__init__(model, backend.allreduce_sum_, world_size=world_size,
                         bucket_bytes=int(bucket_mb * 2**20), progress=progress)
