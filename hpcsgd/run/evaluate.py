"""Exact top-k accuracy over a whole split, each rank evaluating its own contiguous block."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
from hpcsgd.mpi_start import MPI

from hpcsgd.comm.replicas import average_buffers_
from hpcsgd.cpu.compute import autocast, to_layout
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
    world.watch.gate("the evaluation's allreduce of top-k counts")  # no rank waits for ever
    world.comm.Allreduce(MPI.IN_PLACE, counts, op=MPI.SUM)
    model.train(was_training)
    return {"count": int(counts[0]),
            **{f"top{kk}": float(counts[1 + i] / counts[0]) for i, kk in enumerate(topk)}}


class Evaluator:
    """When the loop evaluates, beside the step: every train.eval_every_epochs and at the last
    step, on the replicas' averaged BatchNorm statistics, with the task's evaluation (top-k,
    or the language model's perplexity); the result goes to the log and to the progress
    (last_eval, time_to_target). Collective."""

    def __init__(self, task, forward, model, backend, world, *, every_steps: int,
                 total_steps: int, steps_per_epoch: int, target_top1: float, progress,
                 wall_time, log, timer):
        self.task, self.forward, self.model, self.backend = task, forward, model, backend
        self.world, self.every, self.total_steps = world, every_steps, total_steps
        self.spe, self.target, self.progress, self.wall_time = steps_per_epoch, target_top1, \
            progress, wall_time
        self.log, self.timer = log, timer

    def after_step(self, step: int) -> None:
        if not (step % self.every == 0 or step == self.total_steps):
            return
        average_buffers_(self.model, self.backend, self.world.size, self.world.watch,
                         f"averaging the buffers for the evaluation at step {step}")
        progress = self.progress
        progress.last_eval = result = self.task.evaluate(self.forward)
        if self.target and progress.time_to_target is None \
                and result.get("top1", 0.0) >= self.target:
            progress.time_to_target = self.wall_time()
        self.log.write("eval", step=step, epoch=round(step / self.spe, 4), **result)
        self.log.print(f"eval  epoch {step / self.spe:6.2f}  {self.task.eval_line(result)}")
        self.timer.mark("eval")
