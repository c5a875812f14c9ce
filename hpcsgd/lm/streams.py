"""Token streams of a language-model run, pure functions of (token count, batch, rank, size).

Training (Zaremba et al.'s batching, data-parallel as in the papers): the training tokens are
cut into `global_batch` contiguous streams of equal length L; rank r of `size` owns streams
[r * B/size, (r+1) * B/size). Step s of an epoch reads the window of columns
[s * seq_len, s * seq_len + n) as inputs and the next token of each as targets; the hidden
state is carried from one window to the next (truncated BPTT). The samples of a step are the
same whatever the number of ranks: 4 ranks with B/4 streams each see what 1 rank with B sees.

Evaluation: the split's N - 1 targets (every token but the first) are cut into `num_streams`
contiguous streams; stream k predicts targets [a_k + 1, a_k + 1 + n_k) from inputs
[a_k, a_k + n_k), so the streams together count every target exactly once. Ranks take
contiguous blocks of streams; the cut does not depend on the number of ranks.
"""
from __future__ import annotations

import math

import numpy as np


def stream_length(num_tokens: int, global_batch: int) -> int:
    """L, the tokens in each of the `global_batch` training streams (the tail is dropped)."""
    length = num_tokens // global_batch
    if length < 2:
        raise ValueError(f"{num_tokens} training tokens cannot make {global_batch} streams of "
                         "at least 2 tokens: lower train.global_batch or raise lm.train_fraction")
    return length


def train_streams(ids: np.ndarray, *, global_batch: int, rank: int, size: int) -> np.ndarray:
    """This rank's (global_batch / size, L) block of the training streams."""
    if global_batch % size:
        raise ValueError(f"global batch {global_batch} does not split into {size} ranks")
    length = stream_length(len(ids), global_batch)
    streams = np.asarray(ids[:global_batch * length]).reshape(global_batch, length)
    local = global_batch // size
    return streams[rank * local:(rank + 1) * local]


def steps_per_epoch(length: int, seq_len: int) -> int:
    """Windows that cover the L - 1 targets of a stream (the last one may be shorter)."""
    return math.ceil((length - 1) / seq_len)


def window_bounds(step: int, *, length: int, seq_len: int) -> tuple[int, int]:
    """(first input column, window length) of step `step` of an epoch."""
    start = step * seq_len
    if not 0 <= start < length - 1:
        raise IndexError(f"step {step} is outside an epoch of "
                         f"{steps_per_epoch(length, seq_len)} windows")
    return start, min(seq_len, length - 1 - start)


def window(streams: np.ndarray, step: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of shape (streams, n) for step `step`."""
    start, n = window_bounds(step, length=streams.shape[1], seq_len=seq_len)
    return streams[:, start:start + n], streams[:, start + 1:start + 1 + n]


def eval_streams(num_tokens: int, num_streams: int) -> list[tuple[int, int]]:
    """(first input index a_k, targets n_k) of each evaluation stream; sum n_k = N - 1."""
    targets = num_tokens - 1
    if targets < 1:
        raise ValueError(f"an evaluation split of {num_tokens} tokens has nothing to predict")
    num_streams = min(num_streams, targets)
    base, extra = divmod(targets, num_streams)
    out, start = [], 0
    for k in range(num_streams):
        n = base + (1 if k < extra else 0)
        out.append((start, n))
        start += n
    return out


def rank_block(num_items: int, rank: int, size: int) -> range:
    """Contiguous block of item indices of `rank` (sizes differ by at most one; a rank may
    get none when there are fewer items than ranks)."""
    base, extra = divmod(num_items, size)
    first = rank * base + min(rank, extra)
    return range(first, first + base + (1 if rank < extra else 0))
