"""One trainer for every task: build the run, run the loop, finish the run folder.

    train(task, cfg, world)

A task (hpcsgd/train.py: ImageTask; hpcsgd/lm/train.py: LMTask) says only what differs
between image classification and the language model: its data and batches, its model and
loss, its evaluation, the per-rank state it carries between steps, and its summary. The rest
is shared: threads and core plan, the run folder, rank 0's weights on every replica, the
optimizer and schedule, the overlapped gradient reducer, resume (checkpoint.resume), the
SIGUSR1/SIGTERM requeue stop, the non-finite guard, metering, evaluation and checkpoints.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hpcsgd.cpu import allocator
from hpcsgd import config as config_mod
from hpcsgd.affinity.apply import apply_plan
from hpcsgd.run.checkpoint import (CheckpointError, load_checkpoint, newest_loadable_checkpoint,
                                   rank_entry, restore_state_, set_aside_damaged)
from hpcsgd.comm import build_backend, build_reducer
from hpcsgd.comm.reducer import broadcast_state_, check_replicas
from hpcsgd.comm.replicas import parameter_digest
from hpcsgd.cpu.compute import compile_choice, compute_threads, precision, prepare_model
from hpcsgd.run.evaluate import Evaluator
from hpcsgd.run.loop import Parts, Progress, run_loop
from hpcsgd.run.meter import Meter
from hpcsgd.run.nonfinite import NonFiniteGuard
from hpcsgd.optim.build import build_optimizer
from hpcsgd.run.folder import finish_run, open_run
from hpcsgd.run.saving import Checkpointer
from hpcsgd.schedule.plan import build_schedule
from hpcsgd.run.stop import StopRequest
from hpcsgd.run.world import Refused, World, agree


def train(task, cfg: config_mod.Config, world: World) -> dict:
    """Run the configured training of `task`; returns its summary."""
    t0 = time.time()
    # first: a SIGUSR1/SIGTERM during set-up or staging is kept for the first step boundary,
    # where all ranks agree to checkpoint and exit 3 (not the default action: death, no requeue)
    stop = StopRequest()
    run = build_run(task, cfg, world, stop)
    progress, log = run.progress, run.log

    def wall_time() -> float:
        return progress.wall_time + time.time() - t0

    spe, total_steps = run.parts.steps_per_epoch, run.total_steps
    meter = Meter(log, world.comm, run.parts.watch, unit=task.unit, steps_per_epoch=spe,
                  total_steps=total_steps, log_every=cfg.train.log_every_steps,
                  progress=progress, train_fields=task.train_fields)
    evaluator = Evaluator(task, run.forward, run.model, run.backend, world,
                          every_steps=max(1, round(cfg.train.eval_every_epochs * spe)),
                          total_steps=total_steps, steps_per_epoch=spe,
                          target_top1=cfg.train.target_top1, progress=progress,
                          wall_time=wall_time, log=log, timer=meter.timer)
    checkpointer = Checkpointer(cfg, world, run.parts.watch, model=run.model,
                                optimizer=run.parts.optimizer,
                                backend=run.backend, progress=progress, wall_time=wall_time,
                                log=log, timer=meter.timer, rank_state=task.rank_state,
                                snapshot_steps=run.parts.schedule.snapshot_steps(),
                                every_steps=round(cfg.checkpoint.every_epochs * spe),
                                total_steps=total_steps, steps_per_epoch=spe)
    run.model.train()
    stopped_early = run_loop(run.parts, progress, batches=task.batches, total_steps=total_steps,
                             meter=meter, evaluator=evaluator, checkpointer=checkpointer,
                             stop=stop, world=world, log=log,
                             consistency_every=cfg.comm.consistency_check_steps)
    if stopped_early is not None:
        return stopped_early

    run.parts.reducer.close()  # stops the communication thread and the watchdog (collective)
    check_replicas(run.model, world)  # every rank must hold the same parameters
    checkpointer.save_final()
    summary, final_line = task.summary(progress, steps_per_epoch=spe, wall_time=wall_time())
    summary["allocator"] = allocator.in_use()
    # collective (barrier): the run folder is complete when train() returns
    return finish_run(cfg.run_dir, world, log, summary,
                      f"{final_line} on {world.size} ranks | {summary['wall_time_s']:.0f} s "
                      f"wall | {summary['allocator']} | run folder {cfg.run_dir}")


@dataclass
class Run:
    """A built run: its parts and where it starts."""
    parts: Parts
    model: object
    forward: object
    backend: object
    progress: Progress
    total_steps: int
    log: object


def build_run(task, cfg: config_mod.Config, world: World, stop: StopRequest) -> Run:
    """Collective: threads and core plan, run folder, data, model (rank 0's weights on every
    replica), optimizer, schedule, reducer, and the resumed state when there is one."""
    # no set-up collective waits for ever either: a rank stuck or gone before one of them is
    # named after comm.setup_timeout_s (each is gated or waited for by the watch)
    world.watch.start(cfg.comm.setup_timeout_s)
    torch.set_num_threads(compute_threads(cfg.compute, world.local_size))
    # cores of the compute threads, communication thread and decode workers (collective)
    placement = apply_plan(cfg, world)
    torch.manual_seed(cfg.train.seed)
    log = open_run(cfg, world, f"{task.prog}: {world.size} ranks on {world.num_nodes} "
                   f"node(s), {torch.get_num_threads()} compute threads per rank, "
                   f"{precision(cfg.compute)} compute (compute.precision = "
                   f"{cfg.compute.precision!r}), memory allocator: {allocator.in_use()} "
                   f"(compute.allocator = {cfg.compute.allocator!r})")
    log.print(placement.table)

    spe = task.build_data(placement)
    schedule = build_schedule(cfg, steps_per_epoch=spe)
    # train.epochs, or where a collapse branch ends (schedule.branch_from)
    total_steps = max(1, round(schedule.plan.end_epochs * spe))
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)

    model = task.build_model()
    compiling = compile_choice(cfg.compute, task.model_name, total_steps, cfg.run_dir)
    forward = prepare_model(model, cfg.compute, compiling)  # layout in place; maybe compiled
    log.print(f"torch.compile: {compiling.why}"
              + (f", Inductor cache {compiling.cache}" if compiling.on else ""))
    world.watch.gate("building the communication backend")
    backend = build_backend(cfg.comm.backend, world)
    world.watch.gate("broadcasting rank 0's weights")
    broadcast_state_(model, backend)  # every replica starts from rank 0's weights
    torch.manual_seed(cfg.train.seed + 1 + world.rank)  # per-rank randomness (dropout)
    optimizer = build_optimizer(model, cfg.optim)
    task.attach_optimizer(optimizer, model)  # e.g. the LSTM's gradient clipping (a step hook)
    # on the plan's comm cores; a task whose loop only reads the averaged gradients (and
    # zeroes them after each step) lets them be the node's shared memory
    world.watch.gate("building the gradient reducer")
    reducer = build_reducer(model, placement.comm(cfg.comm), world,
                            gradients_read_only=task.gradients_read_only)

    progress = Progress()
    # from here no collective of the main thread waits past comm.stall_timeout_s (collective)
    world.watch.start(cfg.comm.stall_timeout_s, cores=placement.comm(cfg.comm).comm_cores)
    try:
        # rank 0 chooses what to resume from and tells the others: on a lagging shared file
        # system another rank could list an older checkpoint, or none
        path, loaded = agree(world, lambda: _resume_choice(cfg, log) if world.is_root
                             else (None, None), CheckpointError,
                             what="choosing the checkpoint to resume from")
        world.watch.gate("sending the checkpoint to resume from")
        resume_from = world.comm.bcast(path, root=0)
        if resume_from is not None:  # rank 0 loaded it while choosing
            state = agree(world, lambda: load_checkpoint(resume_from) if loaded is None
                          else loaded, CheckpointError, what=f"loading {resume_from}")
            progress = Progress(**restore_state_(state, model, optimizer, world))
            task.load_rank_state(rank_entry(state, world).get("task", {}))
            agree(world, lambda: _check_resumed(world, resume_from, progress.step, model),
                  CheckpointError, what="checking the resumed state")
    except Refused:
        reducer.close()  # the communication thread and the watchdog end with the refusal
        raise
    if resume_from is not None:
        log.print(f"resumed from {resume_from} at step {progress.step}")
        log.resumed_at(progress.step + 1)
    world.watch.gate("gathering the ranks' pids and allocators")
    pids = world.comm.gather(f"{world.hostname}:{os.getpid()}")  # to signal or inspect a rank
    allocators = world.comm.gather(allocator.in_use())  # each rank preloads for itself
    log.print(_pid_table(pids))
    log.write("start", ranks=world.size, pids=pids, allocators=allocators, steps_per_epoch=spe,
              total_steps=total_steps, threads=torch.get_num_threads(), step=progress.step,
              compiled=compiling.on,
              resumed_from=str(resume_from) if resume_from else None, **task.start_fields())
    guard = NonFiniteGuard(cfg.train.nonfinite, cfg.train.max_nonfinite_skips, world.comm,
                           model, skips=progress.nonfinite_skips)
    parts = Parts(model=model, forward=forward, optimizer=optimizer, reducer=reducer,
                  schedule=schedule, guard=guard, task=task, comm=world.comm,
                  watch=world.watch, stop=stop,
                  compute=cfg.compute,
                  accumulation=cfg.train.accumulation, steps_per_epoch=spe, world_size=world.size)
    return Run(parts=parts, model=model, forward=forward, backend=backend, progress=progress,
               total_steps=total_steps, log=log)


PID_TABLE_RANKS = 64
"""Ranks listed in the output; the start record of metrics.jsonl has them all."""


def _pid_table(pids: list[str] | None) -> str:
    """Rank -> host:pid, printed so that a launcher's report of a dead process ("PID n",
    Hydra's BAD TERMINATION) can be read as a rank: a SIGKILLed rank prints nothing itself."""
    if pids is None:
        return ""
    shown = " ".join(f"{r}={p}" for r, p in enumerate(pids[:PID_TABLE_RANKS]))
    more = f" ... ({len(pids)} ranks: all in metrics.jsonl's start record)" \
        if len(pids) > PID_TABLE_RANKS else ""
    return f"rank=host:pid {shown}{more}"


def _check_resumed(world: World, path: Path, step: int, model) -> None:
    """Collective: every rank loaded the same step and the same weights, or CheckpointError
    naming the ranks that did not (the same message on every rank)."""
    world.watch.gate("comparing the resumed step and parameter digests")
    views = world.comm.allgather((step, parameter_digest(model)))
    odd = [r for r, view in enumerate(views) if view != views[0]]
    if odd:
        detail = ", ".join(f"rank {r}: step {views[r][0]}, weights {views[r][1]}"
                           for r in [0] + odd)
        raise CheckpointError(f"resuming from {str(path)!r}: ranks {odd} loaded another state "
                              f"than rank 0 ({detail})")


def _resume_choice(cfg: config_mod.Config, log) -> tuple[Path | None, dict | None]:
    """Rank 0: (the checkpoint to resume from, its state when already loaded). With "auto",
    a damaged newer checkpoint is passed over with a warning naming it, and set aside whole
    into checkpoints/damaged/."""
    if cfg.checkpoint.resume != "auto":
        return (Path(cfg.checkpoint.resume) if cfg.checkpoint.resume else None), None

    passed_over = []

    def warn(path: Path, reason: str) -> None:
        passed_over.append(path)
        log.write("checkpoint_damaged", path=str(path), reason=reason)
        print(f"hpcsgd: warning: {reason}; passed over",
              file=sys.stderr, flush=True)

    found = newest_loadable_checkpoint(cfg.run_dir / "checkpoints", warn)
    if found is None:
        return None, None
    path, state = found
    for damaged in passed_over:  # kept whole, and out of the resumed run's way
        try:
            aside = set_aside_damaged(damaged)
        except OSError as e:  # housekeeping: never a reason to stop before the collective
            where = "; left in place" if damaged.exists() else ""
            print(f"hpcsgd: warning: {str(damaged)!r} could not be set aside ({e}){where}",
                  file=sys.stderr, flush=True)
            continue
        log.write("checkpoint_set_aside", path=str(damaged), to=str(aside))
        print(f"hpcsgd: warning: {str(damaged)!r} moved to {str(aside)!r}", file=sys.stderr,
              flush=True)
    if passed_over:
        print(f"hpcsgd: warning: resuming from {str(path)!r}, older than the damaged newest "
              "checkpoint: the steps after it are trained again", file=sys.stderr, flush=True)
    return path, state
