"""mpiexec -n 2 .venv/bin/python -m hpcsgd.bench.stepbench [--model resnet50] [--image-size 64] [--batch 16] [--warmup 2] [--steps 6] [--section.key=value ...]

Short training-step benchmark of one core layout, the unit the affinity tuner measures
(`hpcsgd affinity tune`). Every rank: the core plan applied exactly as the trainer applies it
(hpcsgd.affinity.apply.apply_plan), the model on random images of this rank's share of the
global batch, then steps of forward, backward, the gradient reducer (buckets allreduced on
the communication thread during backward) and SGD with momentum. No data loading: the
layouts differ in where compute and communication run. Config options (--cluster.pin=false,
--compute.threads=1, --comm.bucket_mb=4, ...) select the layout.

Rank 0 prints one JSON line: step_s (median over the timed steps of the slowest rank's step
time), the per-step times, img_per_s = batch / step_s, ranks, threads and the plan's table.
Timing stops after --steps steps or, past 2 steps, --budget-s seconds (slow layouts).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def main(argv: list[str] | None = None) -> int:
    from hpcsgd.run.world import init_world, run_or_abort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=24, help="global batch per step")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--budget-s", type=float, default=30.0,
                        help="stop timing after this many seconds (at least 2 timed steps)")
    args, overrides = parser.parse_known_args(argv)

    world = init_world()
    # a failure on one rank ends every rank at once (the others would wait in a collective)
    return run_or_abort(world, _measure, args, overrides, world)


def _measure(args, overrides, world) -> int:
    from hpcsgd.mpi_start import MPI

    from hpcsgd.affinity.apply import apply_plan
    from hpcsgd.comm import build_backend, build_reducer
    from hpcsgd.comm.reducer import broadcast_state_
    from hpcsgd.cpu.compute import compute_threads, prepare_model, to_layout
    from hpcsgd.config import load_config, local_batch
    from hpcsgd.models import build_model

    cfg = load_config(None, [f"--train.global_batch={args.batch}", f"--model.name={args.model}",
                             f"--model.num_classes={args.classes}", "--data.name=imagenet",
                             *overrides], world_size=world.size)
    torch.set_num_threads(compute_threads(cfg.compute, world.local_size))
    placement = apply_plan(cfg, world)

    torch.manual_seed(0)
    model = build_model(cfg.model.name, num_classes=cfg.model.num_classes, in_channels=3)
    forward = prepare_model(model, cfg.compute)
    broadcast_state_(model, build_backend(cfg.comm.backend, world))
    reducer = build_reducer(model, placement.comm(cfg.comm), world, gradients_read_only=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n = local_batch(cfg, world.size)
    gen = torch.Generator().manual_seed(world.rank)
    images = to_layout(torch.randn(n, 3, args.image_size, args.image_size, generator=gen),
                       cfg.compute)
    labels = torch.randint(0, args.classes, (n,), generator=gen)

    times: list[float] = []
    i = 0
    # the decision uses the allreduced times: every rank runs the same number of steps
    while len(times) < args.steps and (len(times) < 2 or sum(times) < args.budget_s):
        world.comm.Barrier()  # sync point: every rank starts the step together
        t0 = time.perf_counter()
        F.cross_entropy(forward(images), labels).backward()
        reducer.synchronize()  # sync point: gradients averaged
        optimizer.step()
        reducer.zero_grad()  # as hpcsgd.train: gradients stay the bucket slots
        slowest = world.comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        if i >= args.warmup:
            times.append(slowest)
        i += 1
    reducer.close()
    if world.is_root:
        step = statistics.median(times)
        print(json.dumps({"ranks": world.size, "threads": placement.threads,
                          "pinned": placement.pinned, "step_s": step, "times": times,
                          "img_per_s": args.batch / step, "table": placement.table}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
