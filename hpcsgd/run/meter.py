"""What the training loop measures and logs, beside the step: phase times, the mean loss of
every log interval and epoch, throughput (hpcsgd/run/loop.py calls it; the step never does).

A log point comes every train.log_every_steps steps, at the end of every epoch and at the
last step: one "train" record (mean loss over the ranks' counted micro-batches, LR, weight
decay, img/s, seconds per phase) and, at an epoch's end, one "epoch" record. Evaluation and
checkpoint time is not training time: it is charged to phases that the records leave out.
"""
from __future__ import annotations

import resource

import numpy as np

from hpcsgd.run.metrics import MetricsLog, Timer
from hpcsgd.optim.build import optimizer_stats

NOT_TRAINING = ("eval", "checkpoint")
"""Timer phases excluded from training time and throughput."""


class Meter:
    def __init__(self, log: MetricsLog, comm, watch, *, unit: str, steps_per_epoch: int,
                 total_steps: int, log_every: int, progress, train_fields=None):
        self.log, self.comm, self.watch, self.progress, self.unit = log, comm, watch, \
            progress, unit
        self.spe, self.total_steps, self.log_every = steps_per_epoch, total_steps, log_every
        self.train_fields = train_fields or (lambda mean_loss: {})
        """mean loss -> the task's own fields of the train record (the LM's perplexity)."""
        self.timer = Timer()
        self.loss_sum, self.loss_n, self.samples_since_log = 0.0, 0, 0
        self.epoch_start = (progress.train_time, progress.images_done)
        self.epoch_loss = (0.0, 0)

    def count(self, result) -> None:
        """One finished step; its losses count only when its update was made."""
        if result.action == "update":
            self.loss_sum, self.loss_n = self.loss_sum + sum(result.losses), \
                self.loss_n + len(result.losses)
        self.samples_since_log += result.samples * self.comm.size

    def log_point(self, step: int, optimizer) -> None:
        """Collective at a log point (one allgather of each rank's loss sum and count)."""
        if not (step % self.log_every == 0 or step == self.total_steps or step % self.spe == 0):
            return
        phases = self.timer.reset()
        for phase in NOT_TRAINING:
            phases.pop(phase, None)
        elapsed = sum(phases.values())
        self.progress.train_time += elapsed
        # every rank's (loss sum, count), skipped steps excluded; summed in rank order
        totals = np.empty((self.comm.size, 2))
        self.watch.wait(self.comm.Iallgather(np.array([self.loss_sum, self.loss_n], float),
                                             totals), f"the train log's allgather at step {step}")
        summed = sum(float(s) for s in totals[:, 0])
        counted = sum(int(n) for n in totals[:, 1])
        mean_loss = summed / counted if counted else None
        rate = self.samples_since_log / elapsed
        self.epoch_loss = (self.epoch_loss[0] + summed, self.epoch_loss[1] + counted)
        group = optimizer.param_groups[0]
        self.log.write("train", step=step, epoch=round(step / self.spe, 4), loss=mean_loss,
                       **self.train_fields(mean_loss), lr=group["lr"],
                       weight_decay=group.get("weight_decay", 0.0),
                       **{f"{self.unit}_per_s": rate}, **optimizer_stats(optimizer),
                       max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                       **{f"{k}_s": v for k, v in phases.items()})
        self.log.print(f"epoch {step / self.spe:6.2f}  step {step:6d}/{self.total_steps}  "
                       f"loss {'-' if mean_loss is None else f'{mean_loss:.4f}'}  "
                       f"lr {group['lr']:.4g}  "
                       f"{rate:8.1f} {self.unit}/s  data {phases.get('data', 0) / elapsed:5.1%}  "
                       f"comm {phases.get('comm', 0) / elapsed:5.1%}")
        self.loss_sum, self.loss_n, self.samples_since_log = 0.0, 0, 0
        if step % self.spe == 0:  # per-epoch summary (a log point is forced there)
            self._epoch_record(step)

    def _epoch_record(self, step: int) -> None:
        progress = self.progress
        seconds = progress.train_time - self.epoch_start[0]
        self.log.write("epoch", epoch=step // self.spe, step=step,
                       loss=self.epoch_loss[0] / self.epoch_loss[1] if self.epoch_loss[1]
                       else None,
                       **{f"{self.unit}_per_s":
                          (progress.images_done - self.epoch_start[1]) / seconds},
                       train_time_s=seconds)
        self.epoch_start = (progress.train_time, progress.images_done)
        self.epoch_loss = (0.0, 0)
