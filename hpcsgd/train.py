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

import contextlib
import os
import resource
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from hpcsgd import config as config_mod
from hpcsgd.affinity.apply import apply_plan
from hpcsgd.checkpoint import (CheckpointError, capture_state, checkpoint_path, latest_checkpoint, load_checkpoint,
                               prune_checkpoints, restore_state_, save_checkpoint)
from hpcsgd.comm import build_backend, build_reducer
from hpcsgd.comm.reducer import (average_buffers_, broadcast_state_, check_consistency,
                                  check_replicas)
from hpcsgd.compute import autocast, compute_threads, precision, prepare_model, to_layout
from hpcsgd.data import build_loaders
from hpcsgd.entry import config_from_argv, run_entry
from hpcsgd.evaluate import evaluate
from hpcsgd.lmdb_store import DataPathError, check_lmdb_path
from hpcsgd.metrics import Timer
from hpcsgd.models import build_from_config
from hpcsgd.nonfinite import EXIT_NONFINITE, NonFiniteGuard
from hpcsgd.optim import apply_schedule_, build_optimizer, optimizer_stats
from hpcsgd.run_folder import finish_run, open_run
from hpcsgd.schedules import build_schedule
from hpcsgd.stop import EXIT_REQUEUE, StopRequest
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


@dataclass
class Progress:
    """Where the run is; saved in checkpoints. The schedule and the sampler positions are
    pure functions of `step`."""
    step: int = 0
    images_done: int = 0
    train_time: float = 0.0
    """Seconds of training steps (evaluation and checkpointing excluded)."""
    wall_time: float = 0.0
    """Seconds since the run first started, summed over its resumed segments."""
    time_to_target: float | None = None
    last_eval: dict = field(default_factory=dict)
    nonfinite_skips: int = 0
    """Steps whose update was skipped for a NaN/Inf loss or gradient (train.nonfinite)."""


def train(cfg: config_mod.Config, world: World) -> dict:
    """Run the configured training; returns the summary (final top-1, throughput, ...)."""
    t0 = time.time()
    # first: a SIGUSR1/SIGTERM during set-up or staging is kept for the first step boundary,
    # where all ranks agree to checkpoint and exit 3 (not the default action: death, no requeue)
    stop = StopRequest()
    torch.set_num_threads(compute_threads(cfg.compute, world.local_size))
    # cores of the compute threads, communication thread and decode workers (collective)
    placement = apply_plan(cfg, world)
    torch.manual_seed(cfg.train.seed)
    run_dir = cfg.run_dir
    log = open_run(cfg, world, f"hpcsgd: {world.size} ranks on {world.num_nodes} node(s), "
                   f"{torch.get_num_threads()} compute threads per rank, "
                   f"{precision(cfg.compute)} compute (compute.precision = "
                   f"{cfg.compute.precision!r})")
    log.print(placement.table)

    local_batch = config_mod.local_batch(cfg, world.size)
    loader, eval_source = build_loaders(cfg, world, local_batch)
    placement.pin_workers(loader)
    train_source = loader.source
    spe = loader.steps_per_epoch
    schedule = build_schedule(cfg, steps_per_epoch=spe)
    # train.epochs, or where a collapse branch ends (schedule.branch_from)
    total_steps = max(1, round(schedule.plan.end_epochs * spe))
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    eval_every = max(1, round(cfg.train.eval_every_epochs * spe))
    ckpt_every = round(cfg.checkpoint.every_epochs * spe)

    model = build_from_config(cfg)
    forward = prepare_model(model, cfg.compute)  # layout in place; maybe a compiled wrapper
    backend = build_backend(cfg.comm.backend, world)
    broadcast_state_(model, backend)  # every replica starts from rank 0's weights
    torch.manual_seed(cfg.train.seed + 1 + world.rank)  # per-rank randomness (dropout)
    optimizer = build_optimizer(model, cfg.optim)
    # on the plan's comm cores; the loop below only reads the averaged gradients, and zeroes
    # them after each optimizer step, so they may be the node's shared memory
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

    def wall_time() -> float:
        return progress.wall_time + time.time() - t0

    def save(path: Path) -> None:
        """Collective: all ranks contribute; rank 0 writes atomically."""
        saved = {**asdict(progress), "wall_time": wall_time()}
        state = capture_state(model, optimizer, saved, world)
        if world.is_root:
            save_checkpoint(path, state, config_mod.to_toml(cfg))
            if path.parent == ckpt_dir:
                prune_checkpoints(ckpt_dir, cfg.checkpoint.keep)
        world.comm.Barrier()  # sync point: the checkpoint is on disk for every rank

    ckpt_dir, snap_dir = run_dir / "checkpoints", run_dir / "snapshots"
    snapshot_steps = set(schedule.snapshot_steps())  # Codreanu VI: ends of the cyclic phases
    if world.is_root:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    model.train()
    guard = NonFiniteGuard(cfg.train.nonfinite, cfg.train.max_nonfinite_skips, world.comm,
                           model, skips=progress.nonfinite_skips)
    timer, loss_sum, loss_n, steps_since_log, step_losses = Timer(), 0.0, 0, 0, []
    epoch_start, epoch_loss = (progress.train_time, progress.images_done), (0.0, 0)
    while progress.step < total_steps:
        epoch, start = divmod(progress.step, spe)
        collapse = schedule.collapsing(epoch)  # Codreanu V-B2, from the step it starts at
        for step_in_epoch, micro, images, labels in loader.epoch(epoch, start, collapse):
            images = to_layout(images, cfg.compute)
            timer.mark("data")
            if micro == 0:
                guard.before_step()  # charged to forward, not to the data wait
            last_micro = micro == cfg.train.accumulation - 1
            with autocast(cfg.compute):
                loss = F.cross_entropy(forward(images), labels)
            timer.mark("forward")
            with contextlib.nullcontext() if last_micro else reducer.no_sync():
                (loss / cfg.train.accumulation).backward()
            step_losses.append(loss.item())
            timer.mark("backward")
            if not last_micro:
                continue
            reducer.synchronize()  # sync point: gradients averaged over all ranks
            timer.mark("comm")
            action, bad = guard.after_step(progress.step + 1, step_losses)  # all ranks agree
            if action == "update":
                loss_sum, loss_n = loss_sum + sum(step_losses), loss_n + len(step_losses)
                apply_schedule_(optimizer, schedule.at(progress.step / spe))
                optimizer.step()
            step_losses = []
            reducer.zero_grad()  # gradients stay views of the zeroed buckets (no copies)
            timer.mark("update")
            if bad is not None:
                progress.nonfinite_skips = guard.skips
                log.write("nonfinite", step=bad.step, loss_ranks=list(bad.loss_ranks),
                          gradients=bad.gradients, action=action)
                log.print(guard.message(action, bad))
                if action == "stop":
                    return _stopped(log, stop, reducer, progress.step, EXIT_NONFINITE,
                                    reason="nonfinite")
            progress.step += 1
            progress.images_done += cfg.train.global_batch
            step, steps_since_log = progress.step, steps_since_log + 1
            if cfg.comm.consistency_check_steps and step % cfg.comm.consistency_check_steps == 0:
                check_consistency(model, world, step)  # cheap checksum: replicas identical

            if step % cfg.train.log_every_steps == 0 or step == total_steps or step % spe == 0:
                phases = timer.reset()
                phases.pop("eval", None)  # evaluation and checkpoints are not training time
                phases.pop("checkpoint", None)
                elapsed = sum(phases.values())
                progress.train_time += elapsed
                totals = world.comm.allgather((loss_sum, loss_n))  # skipped steps excluded
                summed, counted = sum(s for s, _ in totals), sum(n for _, n in totals)
                mean_loss = summed / counted if counted else None
                rate = steps_since_log * cfg.train.global_batch / elapsed
                epoch_loss = (epoch_loss[0] + summed, epoch_loss[1] + counted)
                log.write("train", step=step, epoch=round(step / spe, 4), loss=mean_loss,
                          lr=optimizer.param_groups[0]["lr"],
                          weight_decay=optimizer.param_groups[0].get("weight_decay", 0.0),
                          img_per_s=rate, **optimizer_stats(optimizer),
                          max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          **{f"{k}_s": v for k, v in phases.items()})
                log.print(f"epoch {step / spe:6.2f}  step {step:6d}/{total_steps}  "
                          f"loss {'-' if mean_loss is None else f'{mean_loss:.4f}'}  "
                          f"lr {optimizer.param_groups[0]['lr']:.4g}  "
                          f"{rate:8.1f} img/s  data {phases.get('data', 0) / elapsed:5.1%}  "
                          f"comm {phases.get('comm', 0) / elapsed:5.1%}")
                loss_sum, loss_n, steps_since_log = 0.0, 0, 0
                if step % spe == 0:  # per-epoch summary (a log point is forced there)
                    seconds = progress.train_time - epoch_start[0]
                    log.write("epoch", epoch=step // spe, step=step,
                              loss=epoch_loss[0] / epoch_loss[1] if epoch_loss[1] else None,
                              img_per_s=(progress.images_done - epoch_start[1]) / seconds,
                              train_time_s=seconds)
                    epoch_start, epoch_loss = (progress.train_time, progress.images_done), (0.0, 0)
            if step % eval_every == 0 or step == total_steps:
                average_buffers_(model, backend, world.size)
                progress.last_eval = evaluate(forward, eval_source, world, cfg.compute)
                if cfg.train.target_top1 and progress.time_to_target is None \
                        and progress.last_eval["top1"] >= cfg.train.target_top1:
                    progress.time_to_target = wall_time()
                log.write("eval", step=step, epoch=round(step / spe, 4), **progress.last_eval)
                log.print(f"eval  epoch {step / spe:6.2f}  top-1 {progress.last_eval['top1']:.2%}"
                          f"  top-5 {progress.last_eval['top5']:.2%}  "
                          f"({progress.last_eval['count']} images)")
                timer.mark("eval")
            if step in snapshot_steps:
                average_buffers_(model, backend, world.size)  # one consistent model
                path = snap_dir / f"snapshot_{step:08d}.pt"
                if world.is_root:
                    snap_dir.mkdir(exist_ok=True)
                # a whole checkpoint: a collapse branch continues from it (Codreanu VI)
                save(path)
                log.write("snapshot", step=step, epoch=round(step / spe, 4), path=str(path))
                timer.mark("checkpoint")
            if ckpt_every and step % ckpt_every == 0 and step < total_steps:
                save(checkpoint_path(ckpt_dir, step))
                timer.mark("checkpoint")
            signum = stop.agreed(world.comm)  # one tiny allreduce: all ranks stop together
            if signum and step < total_steps:
                save(checkpoint_path(ckpt_dir, step))
                log.print(f"stopped by {signal.Signals(signum).name} at step {step}: "
                          f"checkpoint written, exit {EXIT_REQUEUE} (requeue)")
                return _stopped(log, stop, reducer, step, EXIT_REQUEUE,
                                signal=signal.Signals(signum).name)
            if step == total_steps:
                break
    stop.restore()

    reducer.close()  # stops the communication thread and the watchdog (collective)
    check_replicas(model, world)  # every rank must hold the same parameters
    save(run_dir / "final.pt")
    corrupt = world.comm.allreduce(train_source.stats.corrupt + eval_source.stats.corrupt)
    last = progress.last_eval
    summary = {"top1": last["top1"], "top5": last["top5"], "eval_images": last["count"],
               "steps": progress.step, "epochs": progress.step / spe, "ranks": world.size,
               "global_batch": cfg.train.global_batch,
               "train_img_per_s": progress.images_done / max(progress.train_time, 1e-9),
               "train_time_s": progress.train_time, "wall_time_s": wall_time(),
               "corrupt_records": corrupt, "time_to_target_s": progress.time_to_target}
    # collective (barrier): the run folder is complete when train() returns
    return finish_run(run_dir, world, log, summary,
                      f"final: test top-1 {summary['top1']:.2%} on {summary['eval_images']} "
                      f"images | training throughput {summary['train_img_per_s']:.0f} img/s on "
                      f"{world.size} ranks | {summary['wall_time_s']:.0f} s wall | run folder "
                      f"{run_dir}")


def _stopped(log, stop, reducer, step: int, exit_code: int, **why) -> dict:
    """End the run early on every rank: the log's "stopped" record, signal handlers back,
    the communication thread and watchdog stopped (collective)."""
    log.write("stopped", step=step, **why)
    log.close()
    stop.restore()
    reducer.close()
    return {"stopped": True, "step": step, "exit_code": exit_code}


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
