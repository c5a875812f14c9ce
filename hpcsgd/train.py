"""Synchronous data-parallel SGD training: the entry point and the loop.

    mpiexec -n 4 .venv/bin/python -m hpcsgd.train jobs/local/fashion_mnist.toml [--train.epochs=5]

Every step: data -> forward -> backward -> gradient allreduce (average over ranks) ->
optimizer step -> schedule. Rank 0 prints the config and progress and writes the run folder
(config.toml, metrics.jsonl, summary.json, final.pt).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from hpcsgd import config as config_mod
from hpcsgd.checkpoint import save_checkpoint
from hpcsgd.comm import build_backend, build_reducer
from hpcsgd.comm.reducer import average_buffers_, broadcast_state_, check_replicas
from hpcsgd.data import build_loaders
from hpcsgd.evaluate import evaluate
from hpcsgd.lmdb_store import DataPathError, check_lmdb_path
from hpcsgd.metrics import MetricsLog, Timer
from hpcsgd.models import build_model
from hpcsgd.optim import apply_schedule_, build_optimizer
from hpcsgd.schedules import build_schedule
from hpcsgd.world import World, expected_world_size, init_world, run_or_abort

EXIT_CONFIG_ERROR = 2
IN_CHANNELS = {"fashion-mnist": 1, "imagenet": 3}


def compute_threads(cfg: config_mod.ComputeConfig, world: World) -> int:
    if cfg.threads:
        return cfg.threads
    return max(1, len(os.sched_getaffinity(0)) // world.local_size)


def check_inputs(cfg: config_mod.Config, world: World) -> None:
    """Everything that can be refused before work: world-size rules and data paths."""
    config_mod.validate(cfg, world_size=world.size)
    for split in (cfg.data.train_split, cfg.data.eval_split):
        check_lmdb_path(f"{cfg.data.path}/{split}")


def train(cfg: config_mod.Config, world: World) -> dict:
    """Run the configured training; returns the summary (final top-1, throughput, ...)."""
    t0 = time.time()
    torch.set_num_threads(compute_threads(cfg.compute, world))
    torch.manual_seed(cfg.train.seed)
    run_dir = cfg.run_dir
    if world.is_root:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(config_mod.to_toml(cfg))
    log = MetricsLog(run_dir / "metrics.jsonl" if world.is_root else None)
    log.print(f"hpcsgd: {world.size} ranks on {world.num_nodes} node(s), "
              f"{torch.get_num_threads()} compute threads per rank\n" + config_mod.to_toml(cfg))

    local_batch = config_mod.local_batch(cfg, world.size)
    loader, eval_source = build_loaders(cfg, world, local_batch)
    train_source = loader.source
    spe = loader.steps_per_epoch
    total_steps = max(1, round(cfg.train.epochs * spe))
    eval_every = max(1, round(cfg.train.eval_every_epochs * spe))

    model = build_model(cfg.model.name, num_classes=cfg.model.num_classes,
                        in_channels=IN_CHANNELS[cfg.data.name], bn_momentum=cfg.model.bn_momentum,
                        zero_init_last_bn=cfg.model.zero_init_last_bn)
    channels_last = cfg.compute.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    backend = build_backend(cfg.comm.backend, world)
    broadcast_state_(model, backend)  # every replica starts from rank 0's weights
    optimizer = build_optimizer(model, cfg.optim)
    schedule = build_schedule(cfg)
    reducer = build_reducer(model, cfg.comm, world)
    log.write("start", ranks=world.size, local_batch=local_batch, steps_per_epoch=spe,
              total_steps=total_steps, threads=torch.get_num_threads())

    model.train()
    timer, train_time, images_done, loss_sum, loss_n = Timer(), 0.0, 0, 0.0, 0
    step, reached_target_at, last_eval = 0, None, {}
    while step < total_steps:
        epoch, start = divmod(step, spe)
        collapse = schedule.at(epoch).collapse
        for step_in_epoch, micro, images, labels in loader.epoch(epoch, start, collapse):
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            timer.mark("data")
            last_micro = micro == cfg.train.accumulation - 1
            loss = F.cross_entropy(model(images), labels)
            with contextlib.nullcontext() if last_micro else reducer.no_sync():
                (loss / cfg.train.accumulation).backward()
            loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
            timer.mark("compute")
            if not last_micro:
                continue
            reducer.synchronize()  # sync point: gradients averaged over all ranks
            timer.mark("comm")
            apply_schedule_(optimizer, schedule.at(step / spe))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            timer.mark("update")
            step += 1
            images_done += cfg.train.global_batch

            if step % cfg.train.log_every_steps == 0 or step == total_steps:
                phases = timer.reset()
                phases.pop("eval", None)  # evaluation time is not training time
                elapsed = sum(phases.values())
                train_time += elapsed
                mean_loss = world.comm.allreduce(loss_sum / loss_n) / world.size
                n_steps = (step - 1) % cfg.train.log_every_steps + 1
                rate = n_steps * cfg.train.global_batch / elapsed
                log.write("train", step=step, epoch=round(step / spe, 4), loss=mean_loss,
                          lr=optimizer.param_groups[0]["lr"], img_per_s=rate,
                          **{f"{k}_s": v for k, v in phases.items()})
                log.print(f"epoch {step / spe:6.2f}  step {step:6d}/{total_steps}  "
                          f"loss {mean_loss:.4f}  lr {optimizer.param_groups[0]['lr']:.4g}  "
                          f"{rate:8.1f} img/s  data {phases.get('data', 0) / elapsed:5.1%}  "
                          f"comm {phases.get('comm', 0) / elapsed:5.1%}")
                loss_sum, loss_n = 0.0, 0
            if step % eval_every == 0 or step == total_steps:
                average_buffers_(model, backend, world.size)
                last_eval = evaluate(model, eval_source, world, channels_last=channels_last)
                if cfg.train.target_top1 and reached_target_at is None \
                        and last_eval["top1"] >= cfg.train.target_top1:
                    reached_target_at = time.time() - t0
                log.write("eval", step=step, epoch=round(step / spe, 4), **last_eval)
                log.print(f"eval  epoch {step / spe:6.2f}  top-1 {last_eval['top1']:.2%}  "
                          f"top-5 {last_eval['top5']:.2%}  ({last_eval['count']} images)")
                timer.mark("eval")
            if step == total_steps:
                break

    check_replicas(model, world)  # every rank must hold the same parameters
    corrupt = world.comm.allreduce(train_source.stats.corrupt + eval_source.stats.corrupt)
    summary = {"top1": last_eval["top1"], "top5": last_eval["top5"],
               "eval_images": last_eval["count"], "steps": step, "epochs": step / spe,
               "ranks": world.size, "global_batch": cfg.train.global_batch,
               "train_img_per_s": images_done / train_time, "train_time_s": train_time,
               "wall_time_s": time.time() - t0, "corrupt_records": corrupt,
               "time_to_target_s": reached_target_at}
    if world.is_root:
        save_checkpoint(run_dir / "final.pt", {"model": model.state_dict(), "step": step},
                        config_mod.to_toml(cfg))
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    world.comm.Barrier()  # sync point: the run folder is complete when train() returns
    log.write("summary", **summary)
    log.print(f"final: test top-1 {summary['top1']:.2%} on {summary['eval_images']} images | "
              f"training throughput {summary['train_img_per_s']:.0f} img/s on {world.size} ranks"
              f" | {summary['wall_time_s']:.0f} s wall | run folder {run_dir}")
    log.close()
    return summary


def setup(argv: list[str], world: World) -> config_mod.Config | None:
    """Parse and check the config on every rank; all ranks agree before anyone works."""
    error = None
    try:
        if not argv or argv[0].startswith("--"):
            raise config_mod.ConfigError("usage: python -m hpcsgd.train CONFIG.toml "
                                         "[--section.key=value ...]")
        cfg = config_mod.load_config(argv[0], argv[1:])
        check_inputs(cfg, world)
    except (config_mod.ConfigError, DataPathError) as e:
        error = str(e)
    errors = world.comm.allgather(error)
    failed = [r for r, e in enumerate(errors) if e is not None]
    if failed:
        if world.is_root:
            ranks = "all ranks" if len(failed) == world.size else f"ranks {failed}"
            print(f"hpcsgd: refused ({ranks}): {errors[failed[0]]}", file=sys.stderr)
        return None
    return cfg


def main(argv: list[str] | None = None) -> int:
    world = init_world()
    expected = expected_world_size()
    if expected is not None and expected != world.size:
        print(f"hpcsgd: the launcher started {expected} processes but MPI sees a world of "
              f"{world.size}: this mpiexec belongs to another MPI than mpi4py's "
              "(use the environment's own mpiexec)", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    cfg = setup(sys.argv[1:] if argv is None else argv, world)
    if cfg is None:
        return EXIT_CONFIG_ERROR
    run_or_abort(world, train, cfg, world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
