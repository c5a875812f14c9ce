"""Exact perplexity over a whole split, the ranks sharing its streams (hpcsgd/lm/streams.py).

Each rank runs its block of evaluation streams, carrying the LSTM state along each stream in
windows of seq_len, and sums the negative log-likelihood of every target; one allreduce adds
the sums of all ranks, so perplexity = exp(total NLL / (N - 1)) counts every target once.
Asked for (per_target), each target's own NLL too, in text order: what a paired comparison of
two models on the same text is measured from (hpcsgd/lm/score.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from hpcsgd.mpi_start import MPI

from hpcsgd.lm.streams import eval_streams, rank_block


@torch.no_grad()
def stream_nll(model, ids: np.ndarray, streams: list[tuple[int, int]], seq_len: int,
               per_target: np.ndarray | None = None) -> float:
    """Summed NLL of the targets of `streams` (equal-length streams run as one batch). Given
    per_target (one entry per target of the split: target t + 1 at index t), each target's
    NLL is written into it as well; the sum is the same either way."""
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
            flat = logits.reshape(-1, logits.shape[-1]).float()
            total += float(F.cross_entropy(flat, targets.reshape(-1), reduction="sum"))
            if per_target is not None:
                each = F.cross_entropy(flat, targets.reshape(-1), reduction="none")
                for row, a in zip(each.reshape(len(starts), -1).double().numpy(), starts):
                    per_target[a + t:a + end] = row
    return total


def evaluate_perplexity(model, ids: np.ndarray, world, *, num_streams: int,
                        seq_len: int, per_target: bool = False) -> dict:
    """{"perplexity", "nll" (mean per target), "count" (= N - 1)} over the whole split, and
    with per_target "target_nll" (N - 1 float64, in text order) on every rank."""
    was_training = model.training
    model.eval()
    streams = eval_streams(len(ids), num_streams)
    mine = [streams[k] for k in rank_block(len(streams), world.rank, world.size)]
    each = np.zeros(len(ids) - 1) if per_target else None  # the other ranks' targets: 0
    sums = np.array([stream_nll(model, ids, mine, seq_len, each), sum(n for _, n in mine)])
    # behind the watch's gate: no rank waits for ever (hpcsgd/run/watch.py)
    world.watch.gate("the evaluation's allreduce of NLL sums")
    world.comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)  # sync point: every rank's sums
    if per_target:  # every target is one rank's: the sum is that rank's value
        world.watch.gate("the evaluation's allreduce of per-target NLLs")
        world.comm.Allreduce(MPI.IN_PLACE, each, op=MPI.SUM)  # sync point: every target
    model.train(was_training)
    nll = float(sums[0] / sums[1])
    result = {"perplexity": math.exp(nll), "nll": nll, "count": int(sums[1])}
    return {**result, "target_nll": each} if per_target else result
