"""Synchronous data-parallel SGD training: the entry point and the loop.

    mpiexec -n 4 .venv/bin/python -m hpcsgd.train jobs/local/fashion_mnist.toml [--train.epochs=5]

Every step: data -> forward -> backward -> gradient allreduce (average over ranks) ->
optimizer step -> schedule. Rank 0 prints the config and progress and writes the run folder
(config.toml, metrics.jsonl, summary.json, final.pt, checkpoints/step_*.pt).

Exit codes: 0 done; 2 refused before any work (bad config, missing data or checkpoint);
3 (EXIT_REQUEUE) stopped by SIGUSR1/SIGTERM after writing a checkpoint: requeue the job with
``--checkpoint.resume=auto`` to continue exactly; 4 the stall watchdog ended the job; 5
(EXIT_NONFINITE) a NaN/Inf loss or gradient stopped the run (train.nonfinite, named in the
log); anything else: a rank failed and the job was aborted.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hpcsgd import config as config_mod
from hpcsgd.affinity.apply import apply_plan
from hpcsgd.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, restore_state_
from hpcsgd.comm import build_backend, build_reducer
from hpcsgd.comm.reducer import broadcast_state_, check_replicas
from hpcsgd.compute import compute_threads, precision, prepare_model
from hpcsgd.data import build_loaders
from hpcsgd.entry import config_from_argv, run_entry
from hpcsgd.evaluate import Evaluator
from hpcsgd.lmdb_store import DataPathError, check_lmdb_path
from hpcsgd.loop import Parts, Progress, run_loop
from hpcsgd.meter import Meter
from hpcsgd.models import build_from_config
from hpcsgd.nonfinite import NonFiniteGuard
from hpcsgd.optim import build_optimizer
from hpcsgd.run_folder import finish_run, open_run
from hpcsgd.saving import Checkpointer
from hpcsgd.schedules import build_schedule
from hpcsgd.stop import StopRequest
from hpcsgd.world import World, agree, run_or_abort


def check_inputs(cfg: config_mod.Config, world: World) -> None:
    """Everything that can be refused before work: world-size rules and data paths."""
    config_mod.validate(cfg, world_size=world.size)
    for split in (cfg.data.train_split, cfg.data.eval_split):
        check_lmdb_path(f"{cfg.data.path}/{split}")
    build_schedule(cfg)  # schedule plans checked with batch and epochs known (ConfigError)
    if cfg.model.name == "lstm_lm":
        raise config_mod.ConfigError("model.name = 'lstm_lm': a language model, trained by "
                                     "python -m hpcsgd.lm.train, not by the image trainer")
    resume = cfg.checkpoint.resume
    if resume not in ("", "auto") and not Path(resume).is_file():
        raise config_mod.ConfigError(f"checkpoint.resume = {resume!r}: no such checkpoint file")


def train(cfg: config_mod.Config, world: World) -> dict:
    """Run the configured training; returns the summary (final top-1, throughput, ...)."""
    t0 = time.time()
    # first: a SIGUSR1/SIGTERM during set-up or staging is kept for the first step boundary,
    # where all ranks agree to checkpoint and exit 3 (not the default action: death, no requeue)
    stop = StopRequest()
    run = build_run(cfg, world)
    progress, log, loader = run.progress, run.log, run.loader

    def wall_time() -> float:
        return progress.wall_time + time.time() - t0

    spe, total_steps = run.parts.steps_per_epoch, run.total_steps
    meter = Meter(log, world.comm, global_batch=cfg.train.global_batch, steps_per_epoch=spe,
                  total_steps=total_steps, log_every=cfg.train.log_every_steps,
                  progress=progress)
    evaluator = Evaluator(run.forward, run.model, run.backend, run.eval_source, world,
                          cfg.compute, every_steps=max(1, round(cfg.train.eval_every_epochs * spe)),
                          total_steps=total_steps, steps_per_epoch=spe,
                          target_top1=cfg.train.target_top1, progress=progress,
                          wall_time=wall_time, log=log, timer=meter.timer)
    checkpointer = Checkpointer(cfg, world, model=run.model, optimizer=run.parts.optimizer,
                                backend=run.backend, progress=progress, wall_time=wall_time,
                                log=log, timer=meter.timer,
                                snapshot_steps=run.parts.schedule.snapshot_steps(),
                                every_steps=round(cfg.checkpoint.every_epochs * spe),
                                total_steps=total_steps, steps_per_epoch=spe)
    run.model.train()
    stopped_early = run_loop(run.parts, progress, loader=loader, total_steps=total_steps,
                             global_batch=cfg.train.global_batch, meter=meter,
                             evaluator=evaluator, checkpointer=checkpointer, stop=stop,
                             world=world, log=log,
                             consistency_every=cfg.comm.consistency_check_steps)
    if stopped_early is not None:
        return stopped_early

    run.parts.reducer.close()  # stops the communication thread and the watchdog (collective)
    check_replicas(run.model, world)  # every rank must hold the same parameters
    checkpointer.save_final()
    corrupt = world.comm.allreduce(loader.source.stats.corrupt + run.eval_source.stats.corrupt)
    last = progress.last_eval
    summary = {"top1": last["top1"], "top5": last["top5"], "eval_images": last["count"],
               "steps": progress.step, "epochs": progress.step / spe, "ranks": world.size,
               "global_batch": cfg.train.global_batch,
               "train_img_per_s": progress.images_done / max(progress.train_time, 1e-9),
               "train_time_s": progress.train_time, "wall_time_s": wall_time(),
               "corrupt_records": corrupt, "time_to_target_s": progress.time_to_target}
    # collective (barrier): the run folder is complete when train() returns
    return finish_run(cfg.run_dir, world, log, summary,
                      f"final: test top-1 {summary['top1']:.2%} on {summary['eval_images']} "
                      f"images | training throughput {summary['train_img_per_s']:.0f} img/s on "
                      f"{world.size} ranks | {summary['wall_time_s']:.0f} s wall | run folder "
                      f"{cfg.run_dir}")


@dataclass
class Run:
    """A built run: its parts, where it starts (progress) and what feeds it."""
    parts: Parts
    model: object
    forward: object
    backend: object
    loader: object
    eval_source: object
    progress: Progress
    total_steps: int
    log: object


def build_run(cfg: config_mod.Config, world: World) -> Run:
    """Collective: threads and core plan, run folder, data, model (rank 0's weights on every
    replica), optimizer, schedule, reducer, and the resumed state when there is one."""
    torch.set_num_threads(compute_threads(cfg.compute, world.local_size))
    # cores of the compute threads, communication thread and decode workers (collective)
    placement = apply_plan(cfg, world)
    torch.manual_seed(cfg.train.seed)
    log = open_run(cfg, world, f"hpcsgd: {world.size} ranks on {world.num_nodes} node(s), "
                   f"{torch.get_num_threads()} compute threads per rank, "
                   f"{precision(cfg.compute)} compute (compute.precision = "
                   f"{cfg.compute.precision!r})")
    log.print(placement.table)

    local_batch = config_mod.local_batch(cfg, world.size)
    loader, eval_source = build_loaders(cfg, world, local_batch)
    placement.pin_workers(loader)
    spe = loader.steps_per_epoch
    schedule = build_schedule(cfg, steps_per_epoch=spe)
    # train.epochs, or where a collapse branch ends (schedule.branch_from)
    total_steps = max(1, round(schedule.plan.end_epochs * spe))
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)

    model = build_from_config(cfg)
    forward = prepare_model(model, cfg.compute)  # layout in place; maybe a compiled wrapper
    backend = build_backend(cfg.comm.backend, world)
    broadcast_state_(model, backend)  # every replica starts from rank 0's weights
    torch.manual_seed(cfg.train.seed + 1 + world.rank)  # per-rank randomness (dropout)
    optimizer = build_optimizer(model, cfg.optim)
    # on the plan's comm cores; the loop only reads the averaged gradients, and zeroes them
    # after each optimizer step, so they may be the node's shared memory
    reducer = build_reducer(model, placement.comm(cfg.comm), world, gradients_read_only=True)

    progress = Progress()
    resume_from = _resume_path(cfg)
    if resume_from is not None:
        state = agree(world, lambda: load_checkpoint(resume_from), CheckpointError)
        progress = Progress(**restore_state_(state, model, optimizer, world))
        log.print(f"resumed from {resume_from} at step {progress.step}")
        log.resumed_at(progress.step + 1)
    pids = world.comm.gather(f"{world.hostname}:{os.getpid()}")  # to signal or inspect a rank
    log.write("start", ranks=world.size, pids=pids, local_batch=local_batch, steps_per_epoch=spe,
              total_steps=total_steps, threads=torch.get_num_threads(), step=progress.step,
              resumed_from=str(resume_from) if resume_from else None)
    guard = NonFiniteGuard(cfg.train.nonfinite, cfg.train.max_nonfinite_skips, world.comm,
                           model, skips=progress.nonfinite_skips)
    parts = Parts(model=model, forward=forward, optimizer=optimizer, reducer=reducer,
                  schedule=schedule, guard=guard, compute=cfg.compute,
                  accumulation=cfg.train.accumulation, steps_per_epoch=spe)
    return Run(parts=parts, model=model, forward=forward, backend=backend, loader=loader,
               eval_source=eval_source, progress=progress, total_steps=total_steps, log=log)


def _resume_path(cfg: config_mod.Config) -> Path | None:
    if cfg.checkpoint.resume == "auto":
        return latest_checkpoint(cfg.run_dir / "checkpoints")
    return Path(cfg.checkpoint.resume) if cfg.checkpoint.resume else None


def setup(argv: list[str], world: World) -> config_mod.Config:
    """Parse and check the config on every rank; all ranks agree before anyone works."""
    def parse():
        cfg = config_from_argv(argv, "hpcsgd.train")
        check_inputs(cfg, world)
        return cfg
    return agree(world, parse, config_mod.ConfigError, DataPathError)


def main(argv: list[str] | None = None) -> int:
    def start(args: list[str], world: World) -> dict:
        return run_or_abort(world, train, setup(args, world), world)
    return run_entry("hpcsgd", start, argv)


if __name__ == "__main__":
    sys.exit(main())
