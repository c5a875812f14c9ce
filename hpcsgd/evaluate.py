"""Exact top-k accuracy over a whole split, each rank evaluating its own contiguous block."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
from mpi4py import MPI

from hpcsgd.compute import autocast, to_layout
from hpcsgd.config import ComputeConfig
from hpcsgd.data import eval_batches


@torch.no_grad()
def evaluate(model: nn.Module, source, world, compute: ComputeConfig | None = None, *,
             batch: int = 500, topk=(1, 5)) -> dict:
    """Returns {"top1": ..., "top5": ..., "count": N}; counts summed over ranks, so every
    sample is counted exactly once (sharding.eval_shard) and corrupt ones are excluded."""
    was_training = model.training
    model.eval()
    # counts[0] = samples seen, counts[1 + i] = correct within top-k[i]
    counts = np.zeros(1 + len(topk), np.int64)
    for images, labels in eval_batches(source, rank=world.rank, size=world.size, batch=batch):
        if compute is not None:
            images = to_layout(images, compute)
        with autocast(compute) if compute is not None else contextlib.nullcontext():
            logits = model(images).float()
        k = min(max(topk), logits.shape[1])
        ranked = logits.topk(k, dim=1).indices
        hit = ranked == labels[:, None]
        counts[0] += len(labels)
        for i, kk in enumerate(topk):
            counts[1 + i] += int(hit[:, :kk].any(dim=1).sum())
    world.comm.Allreduce(MPI.IN_PLACE, counts, op=MPI.SUM)
    model.train(was_training)
    return {"count": int(counts[0]),
            **{f"top{kk}": float(counts[1 + i] / counts[0]) for i, kk in enumerate(topk)}}
