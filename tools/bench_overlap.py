"""flock /tmp/hpcsgd-bench.lock nice -n -20 .venv/bin/mpiexec -n 2 .venv/bin/python tools/bench_overlap.py [--layout shared|dedicated] [--batch 2] [--steps 3] [--bucket-mb 8]

How much of the gradient allreduce the overlapped reducer hides behind the backward pass:
ResNet-50 training steps (forward, backward, gradient averaging, SGD with momentum; random
224x224 images, channels_last), one run, the same ranks, model, batch and reducer in three
modes, interleaved step by step so that drift in the machine's load hits all three alike:
- compute   no communication at all (each rank steps alone): the floor;
- after     backward first (under no_sync), then every bucket allreduced on the
            communication thread, waited for at once: a blocking allreduce after backward;
- overlap   each bucket handed to the communication thread as soon as backward fills it.
exposed = step(mode) - step(compute); hidden = 1 - exposed(overlap) / exposed(after).
`wait` is the time synchronize() waited (the communication left after backward).

Layouts (Codreanu et al. IV-E put ML-SL's endpoint servers on cores of their own):
- shared     rank r's compute on core r mod ncores, communication thread not pinned;
- dedicated  every rank's compute on the first ncores - 1 cores, the communication threads
             on the last core (comm.comm_cores), as on KNL (64 compute + 4 communication).
Per-step times are the slowest rank's; the table gives medians over --steps.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mpi4py import MPI  # noqa: E402

from hpcsgd.comm import build_backend, build_reducer  # noqa: E402
from hpcsgd.comm.reducer import broadcast_state_  # noqa: E402
from hpcsgd.config import CommConfig  # noqa: E402
from hpcsgd.models import build_model  # noqa: E402
from hpcsgd.run.world import init_world  # noqa: E402


def plan_cores(layout: str, local_rank: int) -> tuple[set[int], list[int]]:
    """(compute cores, communication cores) of this rank."""
    cores = sorted(os.sched_getaffinity(0))
    if layout == "shared":
        return {cores[local_rank % len(cores)]}, []
    if len(cores) < 2:
        raise SystemExit("the dedicated layout needs at least 2 cores")
    return set(cores[:-1]), cores[-1:]


def step(model, optimizer, reducer, images, labels, mode: str) -> float:
    """One training step in `mode`; returns the time synchronize() waited."""
    loss = F.cross_entropy(model(images), labels)
    if mode == "overlap":
        loss.backward()
    else:
        with reducer.no_sync():
            loss.backward()
    wait = 0.0
    if mode != "compute":
        reducer.synchronize()  # sync point
        wait = reducer.wait_s
    optimizer.step()
    reducer.zero_grad()  # gradients stay the zeroed bucket slots (as in hpcsgd.train)
    return wait


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", choices=("shared", "dedicated"), default="dedicated")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=2, help="local batch per rank")
    ap.add_argument("--image", type=int, default=224)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    ap.add_argument("--bucket-mb", type=float, default=CommConfig().bucket_mb)
    args = ap.parse_args()

    world = init_world()
    compute_cores, comm_cores = plan_cores(args.layout, world.local_rank)
    os.sched_setaffinity(0, compute_cores)  # before torch starts its OpenMP threads
    sharing = 1 if args.layout == "shared" else world.local_size  # ranks on these cores
    torch.set_num_threads(max(1, len(compute_cores) // sharing))
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=1000).to(memory_format=torch.channels_last)
    broadcast_state_(model, build_backend("mpi", world))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    reducer = build_reducer(model, CommConfig(bucket_mb=args.bucket_mb, comm_cores=comm_cores),
                            world, gradients_read_only=True)  # as hpcsgd.train
    g = torch.Generator().manual_seed(world.rank)
    images = torch.randn(args.batch, 3, args.image, args.image, generator=g) \
        .contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (args.batch,), generator=g)

    modes = ("compute", "after", "overlap")
    times = {m: [] for m in modes}
    waits = {m: [] for m in modes}
    for m in modes:  # warm-up: oneDNN primitives, buffers, first-touch of the buckets
        step(model, optimizer, reducer, images, labels, m)
    for _ in range(args.steps):
        for m in modes:
            world.comm.Barrier()
            t0 = time.perf_counter()
            wait = step(model, optimizer, reducer, images, labels, m)
            times[m].append(world.comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
            waits[m].append(world.comm.allreduce(wait, op=MPI.MAX))
    nbytes = sum(b.nbytes for b in reducer.buckets)
    reducer.close()

    if world.is_root:
        med = {m: statistics.median(times[m]) for m in modes}
        wmed = {m: statistics.median(waits[m]) for m in modes}
        exposed_after = med["after"] - med["compute"]
        exposed_overlap = med["overlap"] - med["compute"]
        print(f"# {args.model}, {world.size} ranks, layout {args.layout} (compute cores "
              f"{sorted(compute_cores)}, comm cores {comm_cores or 'not pinned'}, "
              f"{torch.get_num_threads()} compute threads/rank), local batch {args.batch}, "
              f"{args.image}px, {nbytes / 1e6:.1f} MB gradients in {len(reducer.buckets)} "
              f"buckets of {args.bucket_mb:g} MB, median of {args.steps} steps, load average "
              f"{os.getloadavg()[0]:.1f}")
        print("| mode | step s | exposed s | wait s | steps s |")
        print("|---|---|---|---|---|")
        for m in modes:
            print(f"| {m} | {med[m]:.3f} | {med[m] - med['compute']:+.3f} | {wmed[m]:.3f} | "
                  f"{' '.join(f'{t:.3f}' for t in times[m])} |")
        hidden = 1 - exposed_overlap / exposed_after if exposed_after > 0 else float("nan")
        hidden_wait = 1 - wmed["overlap"] / wmed["after"] if wmed["after"] > 0 else float("nan")
        print(f"hidden (step times): {hidden:.0%}   hidden (synchronize waits): "
              f"{hidden_wait:.0%}   exposed comm per step: overlap {exposed_overlap:.3f} s, "
              f"after-backward {exposed_after:.3f} s")


if __name__ == "__main__":
    main()
