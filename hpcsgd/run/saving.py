"""When a run saves itself, beside the training step: periodic checkpoints
(checkpoint.every_epochs, the newest checkpoint.keep kept), snapshots at the schedule's
snapshot steps (Codreanu VI: the cyclic schedule's cycle ends, whole checkpoints a collapse
branch continues), the checkpoint of a stop request, and final.pt. Every save is collective:
all ranks contribute their RNG state and buffers, rank 0 writes atomically
(hpcsgd/run/checkpoint.py: the file format)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from hpcsgd.run.checkpoint import (capture_state, checkpoint_path, prune_checkpoints,
                                   save_checkpoint, snapshot_path)
from hpcsgd.comm.reducer import average_buffers_
from hpcsgd.config import to_toml


class Checkpointer:
    def __init__(self, cfg, world, watch, *, model, optimizer, backend, progress, wall_time,
                 log, timer, rank_state, snapshot_steps, every_steps: int, total_steps: int,
                 steps_per_epoch: int):
        self.cfg, self.world, self.watch = cfg, world, watch
        self.model, self.optimizer = model, optimizer
        self.backend, self.progress, self.wall_time = backend, progress, wall_time
        self.log, self.timer, self.spe = log, timer, steps_per_epoch
        self.rank_state = rank_state
        """() -> what the task carries from step to step on this rank (the LSTM's state)."""
        self.snapshot_steps, self.every, self.total_steps = set(snapshot_steps), every_steps, \
            total_steps
        self.ckpt_dir = cfg.run_dir / "checkpoints"
        if world.is_root:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)

    def save(self, path: Path) -> None:
        """Collective: all ranks contribute; rank 0 writes atomically."""
        saved = {**asdict(self.progress), "wall_time": self.wall_time()}
        self.watch.gate(f"saving {path.name}")  # capture_state gathers every rank's state
        state = capture_state(self.model, self.optimizer, saved, self.world,
                              task=self.rank_state())
        if self.world.is_root:
            save_checkpoint(path, state, to_toml(self.cfg))
            if path.parent == self.ckpt_dir:
                prune_checkpoints(self.ckpt_dir, self.cfg.checkpoint.keep)
        # sync point: the checkpoint is on disk for every rank
        self.watch.barrier(f"the barrier after writing {path.name}")

    def after_step(self, step: int) -> None:
        if step in self.snapshot_steps:
            # one consistent model
            average_buffers_(self.model, self.backend, self.world.size, self.watch,
                             f"averaging the buffers for the snapshot at step {step}")
            path = snapshot_path(self.cfg.run_dir, step)
            if self.world.is_root:
                path.parent.mkdir(exist_ok=True)
            # a whole checkpoint: a collapse branch continues from it (Codreanu VI)
            self.save(path)
            self.log.write("snapshot", step=step, epoch=round(step / self.spe, 4),
                           path=str(path))
            self.timer.mark("checkpoint")
        if self.every and step % self.every == 0 and step < self.total_steps:
            self.save_periodic(step)
            self.timer.mark("checkpoint")

    def save_periodic(self, step: int) -> None:
        self.save(checkpoint_path(self.ckpt_dir, step))

    def save_final(self) -> None:
        self.save(self.cfg.run_dir / "final.pt")
