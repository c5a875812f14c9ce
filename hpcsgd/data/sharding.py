"""Deterministic data sharding as pure functions of (seed, epoch, step, rank).

Training: every epoch has one global permutation seeded by (seed, epoch). Optimizer step k
consumes the global batch ``perm[k*B : (k+1)*B]``; inside it, micro-batch m of rank r is the
slice at offset ``(m * size + r) * b`` (b = local batch). So the samples of a step do not
depend on the number of ranks (1 rank with batch B sees what 4 ranks with B/4 see together),
shards are disjoint, and a run resumes at any step by recomputing the same slices.
Remainder: the last ``N mod B`` samples of each epoch's permutation are not used that epoch
(a different set every epoch).

Evaluation: rank r takes the contiguous block ``[r*N//size, (r+1)*N//size)``: every sample
exactly once, no padding, so summed counts are exact.
"""
from __future__ import annotations

import numpy as np


def epoch_permutation(num_samples: int, *, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    steps = num_samples // global_batch
    if steps == 0:
        raise ValueError(f"global batch {global_batch} exceeds the {num_samples} samples")
    return steps


def micro_batch_indices(perm: np.ndarray, *, step: int, micro: int, rank: int, size: int,
                        local_batch: int, accumulation: int) -> np.ndarray:
    """Sample indices of rank `rank`'s micro-batch `micro` in optimizer step `step`."""
    if not (0 <= rank < size and 0 <= micro < accumulation):
        raise ValueError(f"rank {rank}/{size}, micro-batch {micro}/{accumulation} out of range")
    global_batch = local_batch * size * accumulation
    start = step * global_batch + (micro * size + rank) * local_batch
    if start + local_batch > len(perm):
        raise IndexError(f"step {step} is beyond the epoch ({len(perm)} samples, "
                         f"global batch {global_batch})")
    return perm[start:start + local_batch]


def eval_shard(num_samples: int, *, rank: int, size: int) -> range:
    return range(rank * num_samples // size, (rank + 1) * num_samples // size)
