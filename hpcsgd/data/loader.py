"""Batches for one rank: sharded indices -> sources (in worker processes or in place) -> tensors.

Training: `TrainLoader.epoch` yields (step, micro, images, labels) of this rank from any step
on (the indices are pure functions of (seed, epoch, step, rank), hpcsgd/data/sharding.py, and so is
the augmentation), decoding up to `prefetch` batches ahead. Evaluation: `eval_batches` walks
this rank's contiguous block of the split. Images are float32 NCHW tensors (channels_last
memory for RGB), labels int64.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch

from hpcsgd.data import sharding
def _finish(source, pixels: np.ndarray, results) -> tuple[torch.Tensor, torch.Tensor]:
    """Count bad records (may stop the run), normalise, drop evaluation samples left out."""
    labels, valid = [], []
    for result in results:
        source.stats.add(result, where=source.where, max_fraction=source.cfg.max_corrupt_fraction)
        labels += result.labels
        valid += result.valid
    images = source.normalize(pixels)  # a new tensor: the slot may be reused right after
    labels = torch.tensor(labels, dtype=torch.int64)
    if not all(valid):
        keep = torch.tensor(valid)
        images, labels = images[keep], labels[keep]
    return images, labels


def run_requests(source, requests, *, prefetch: int):
    """Yield (tag, images, labels) for each (tag, indices, seed_key, mode) request, in order
    (mode: a transform of hpcsgd/data/transforms.MODES, per request).

    With a worker pool, up to `prefetch` requests are decoded ahead; a generator closed early
    (the trainer stops mid-epoch) discards what it had queued."""
    pool = source.pool
    if pool is None:
        for tag, indices, seed_key, mode in requests:
            pixels = np.empty((len(indices), *source.sample_shape), np.uint8)
            result = source.fill(pixels, indices, mode=mode, seed_key=seed_key)
            yield (tag, *_finish(source, pixels, [result]))
        return
    pending: deque = deque()
    requests = iter(requests)
    try:
        while True:
            while len(pending) < prefetch:
                request = next(requests, None)
                if request is None:
                    break
                tag, indices, seed_key, mode = request
                pending.append((tag, pool.submit(source.ring, indices, mode=mode,
                                                 seed_key=seed_key)))
            if not pending:
                return
            tag, ticket = pending.popleft()
            try:
                pixels, results = pool.wait(ticket)  # sync point: this batch decoded
                images, labels = _finish(source, pixels, results)
            finally:
                pool.release(ticket)
            yield tag, images, labels
    finally:
        for _, ticket in pending:
            pool.discard(ticket)


class TrainLoader:
    """One rank's micro-batches of an epoch, resumable at any step."""

    def __init__(self, source, *, seed: int, rank: int, size: int, local_batch: int,
                 accumulation: int, augment: bool, prefetch: int = 2):
        self.source, self.seed, self.rank, self.size = source, seed, rank, size
        self.local_batch, self.accumulation, self.augment = local_batch, accumulation, augment
        self.prefetch = prefetch
        self.steps_per_epoch = sharding.steps_per_epoch(len(source),
                                                        local_batch * size * accumulation)

    @property
    def workers(self) -> int:
        """Decode processes of this rank (0: decoding happens in the training process)."""
        return 0 if self.source.pool is None else len(self.source.pool.procs)

    def set_worker_affinity(self, cpu_sets) -> None:
        """Pin decode worker i to cpu_sets[i % len(cpu_sets)] (the core plan's data cores)."""
        if self.source.pool is not None:
            self.source.pool.set_affinity(cpu_sets)

    def mode(self, collapse: bool) -> str:
        """Codreanu V-B2: the collapse phase turns scale/aspect augmentation off but keeps the
        random crop; without augmentation training takes the evaluation transform."""
        if not self.augment:
            return "eval"
        return "collapse" if collapse else "train"

    def epoch(self, epoch: int, start_step: int = 0, collapse=False):
        """Yield (step, micro, images, labels) from `start_step` to the end of the epoch.
        collapse: whether the collapse phase's augmentation is in force, for the whole epoch
        (a bool) or per step (step in epoch -> bool: a collapse phase may begin or end inside
        an epoch, Schedule.collapsing)."""
        perm = sharding.epoch_permutation(len(self.source), seed=self.seed, epoch=epoch)
        collapsing = collapse if callable(collapse) else (lambda step: collapse)

        def requests():
            for step in range(start_step, self.steps_per_epoch):
                mode = self.mode(collapsing(step))
                for micro in range(self.accumulation):
                    idx = sharding.micro_batch_indices(
                        perm, step=step, micro=micro, rank=self.rank, size=self.size,
                        local_batch=self.local_batch, accumulation=self.accumulation)
                    # augmentation randomness: a function of (seed, epoch, step, micro, rank)
                    # (28x28 sets) or of (seed, epoch, sample) (ImageNet): resumable
                    yield (step, micro), idx, (self.seed, epoch, step, micro, self.rank), mode

        for (step, micro), images, labels in run_requests(self.source, requests(),
                                                          prefetch=self.prefetch):
            yield step, micro, images, labels


def eval_batches(source, *, rank: int, size: int, batch: int):
    """(images, labels) over this rank's block of the split (sharding.eval_shard); bad
    samples are left out, so each sample is counted at most once over all ranks."""
    shard = sharding.eval_shard(len(source), rank=rank, size=size)
    # with workers, a batch is decoded in pieces no larger than a slot
    piece = batch if source.pool is None else min(batch, source.pool.capacity)

    def requests():
        for start in range(shard.start, shard.stop, batch):
            stop = min(start + batch, shard.stop)
            for s in range(start, stop, piece):
                yield start, np.arange(s, min(s + piece, stop)), (0, 0), "eval"

    prefetch = 2 if source.pool is None else source.pool.free_slots(source.ring)
    current, parts = None, []
    for start, images, labels in run_requests(source, requests(), prefetch=max(1, prefetch)):
        if start != current and parts:
            yield _cat(parts)
            parts = []
        current = start
        parts.append((images, labels))
    if parts:
        yield _cat(parts)


def _cat(parts):
    if len(parts) == 1:
        return parts[0]
    return (torch.cat([p[0] for p in parts]).contiguous(memory_format=_layout(parts[0][0])),
            torch.cat([p[1] for p in parts]))


def _layout(images: torch.Tensor):
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last) \
            and not images.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
