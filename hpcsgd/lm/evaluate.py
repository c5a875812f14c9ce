"""Exact perplexity over a whole split, the ranks sharing its streams (hpcsgd/lm/streams.py).

Each rank runs its block of evaluation streams, carrying the LSTM state along each stream in
windows of seq_len, and sums the negative log-likelihood of every target; one allreduce adds
the sums of all ranks, so perplexity = exp(total NLL / (N - 1)) counts every target once.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from hpcsgd.mpi_start import MPI

from hpcsgd.lm.streams import eval_streams, rank_block


@torch.no_grad()
def stream_nll(model, ids: np.ndarray, streams: list[tuple[int, int]], seq_len: int) -> float:
    """Summed NLL of the targets of `streams` (equal-length streams run as one batch)."""
    total = 0.0
    by_length: dict[int, list[int]] = {}
    for start, n in streams:
        by_length.setdefault(n, []).append(start)
    for n, starts in by_length.items():
        block = torch.from_numpy(np.stack([ids[a:a + n + 1] for a in starts]))
        state = None
        for t in range(0, n, seq_len):
            end = min(t + seq_len, n)  # inputs t..end-1 predict targets t+1..end
            inputs, targets = block[:, t:end], block[:, t + 1:end + 1]
            logits, state = model(inputs, state)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                           targets.reshape(-1), reduction="sum"))
    return total


def evaluate_perplexity(model, ids: np.ndarray, world, *, num_streams: int,
                        seq_len: int) -> dict:
    """{"perplexity", "nll" (mean per target), "count" (= N - 1)} over the whole split."""
    was_training = model.training
    model.eval()
    streams = eval_streams(len(ids), num_streams)
    mine = [streams[k] for k in rank_block(len(streams), world.rank, world.size)]
    sums = np.array([stream_nll(model, ids, mine, seq_len), sum(n for _, n in mine)])
    # behind the watch's gate: no rank waits for ever (hpcsgd/run/watch.py)
    world.watch.gate("the evaluation's allreduce of NLL sums")
    world.comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)  # sync point: every rank's sums
    model.train(was_training)
    nll = float(sums[0] / sums[1])
    return {"perplexity": math.exp(nll), "nll": nll, "count": int(sums[1])}
