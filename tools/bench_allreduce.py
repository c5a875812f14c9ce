"""flock /tmp/hpcsgd-bench.lock nice -n -20 .venv/bin/mpiexec -n 2 .venv/bin/python tools/bench_allreduce.py [--reps 5] [--bucket-mb 25 ...]

OSU-style bandwidth, one run, same ranks and bytes: our gradient reducer on ResNet-50-sized
gradients (the real parameter shapes, 25.6M fp32 values, 102 MB) versus one plain
``comm.Allreduce(MPI.IN_PLACE, buf)`` of the same total bytes.

Rows (time = slowest rank, over --reps rounds after a warm-up round, the paths taking turns
within a round; bandwidth = bytes / median time, "algbw" as in OSU/nccl-tests):
- plain         one Allreduce of all the bytes, on the main thread;
- plain, 16 MB messages  Allreduce calls of comm.message_mb each, on the main thread;
- plain, same buckets  one Allreduce per bucket of the reducer, on the main thread;
- reducer comm  the reducer's communication path (flat MPI, comm.hierarchical = "off"):
                every bucket handed to the communication
                thread and waited for (bucketing + thread hand-off + the allreduces, each
                split into messages of comm.message_mb);
- reducer full  the same plus packing from .grad: the post-accumulate-grad hook of every
                parameter called back to back (divide by world size into the bucket), then
                synchronize(); what a step pays when backward leaves no time to overlap;
- blocking      the baseline reducer: pack and allreduce every bucket in synchronize();
- bf16 wire / hierarchical: the reducer's communication path with those options (the
                hierarchical reducer's buckets live in shared memory: no copy in).
The ratio column is plain time / row time (1.0 = as fast as the plain Allreduce).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch  # noqa: E402
from mpi4py import MPI  # noqa: E402

from hpcsgd.comm import build_reducer  # noqa: E402
from hpcsgd.comm.buckets import make_buckets  # noqa: E402
from hpcsgd.config import CommConfig  # noqa: E402
from hpcsgd.models import build_model  # noqa: E402
from hpcsgd.run.world import init_world  # noqa: E402


def timed(world, paths: list[tuple[str, object]], reps: int) -> dict[str, list[float]]:
    """Slowest rank's time of each path, `reps` rounds after one warm-up round; the paths
    take turns within a round, so that drift in the machine's load hits all of them alike."""
    times = {name: [] for name, _ in paths}
    for rep in range(reps + 1):
        for name, fn in paths:
            world.comm.Barrier()
            t0 = time.perf_counter()
            fn()
            if rep:
                times[name].append(world.comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
    return times


def comm_path(reducer):
    """Every bucket through the reducer's communication thread, then wait (sync point)."""
    for b in reducer.buckets:
        b.flat.zero_()  # sums of zeros stay finite however often they are reduced
    def run():
        handles = [reducer.engine.submit(reducer.allreduce_, b.flat, label="bench")
                   for b in reducer.buckets]
        for h in handles:
            h.wait()
    return run


def full_path(reducer, params, grads):
    def run():
        for p, g in zip(params, grads):
            p.grad = g
        for p in reversed(params):  # the order backward produces them
            reducer.grad_ready(p)
        reducer.synchronize()
    return run


def blocking_path(reducer, params, grads):
    def run():
        for p, g in zip(params, grads):
            p.grad = g
        reducer.synchronize()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bucket-mb", type=float, nargs="+", default=[CommConfig().bucket_mb])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = init_world()
    model = build_model("resnet50", num_classes=1000).to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) for p in params]
    numel = sum(p.numel() for p in params)
    nbytes = numel * 4
    flat = torch.randn(numel)

    message = int(CommConfig().message_mb * 2**20) // 4
    messages = list(flat.split(message))
    paths = [("plain comm.Allreduce",
              lambda: world.comm.Allreduce(MPI.IN_PLACE, flat.numpy())),
             (f"plain, {CommConfig().message_mb:g} MB messages",
              lambda: [world.comm.Allreduce(MPI.IN_PLACE, x.numpy()) for x in messages])]
    reducers = []
    for mb in args.bucket_mb:
        sizes = [sum(p.numel() for p in b)
                 for b in make_buckets(params[::-1], int(mb * 2**20))]  # the reducer's buckets
        pieces = list(flat.split(sizes))
        paths.append((f"plain, same buckets ({len(sizes)} x {mb:g} MB)",
                      lambda pieces=pieces: [world.comm.Allreduce(MPI.IN_PLACE, x.numpy())
                                             for x in pieces]))
        for name, options in [("reducer comm", {"hierarchical": "off"}),
                              ("bf16 wire comm", {"wire_dtype": "bfloat16", "hierarchical": "off"}),
                              ("hierarchical comm", {"hierarchical": "on"})]:
            reducers.append(build_reducer(model, CommConfig(bucket_mb=mb, **options), world))
            paths.append((f"{name} ({mb:g} MB)", comm_path(reducers[-1])))
        paths.append((f"reducer full ({mb:g} MB)", full_path(reducers[-3], params, grads)))
        reducers.append(build_reducer(model, CommConfig(bucket_mb=mb, overlap=False,
                                                        hierarchical="off"), world))
        paths.append((f"blocking reducer ({mb:g} MB)",
                      blocking_path(reducers[-1], params, grads)))
    times = timed(world, paths, args.reps)
    for r in reducers:
        r.close()

    nodes = world.num_nodes  # collective
    if world.is_root:
        plain = statistics.median(times["plain comm.Allreduce"])
        print(f"# {world.size} ranks on {nodes} node(s), {nbytes / 1e6:.1f} MB of "
              f"ResNet-50 gradients ({numel} fp32), {args.reps} rounds, "
              f"{MPI.Get_library_version().splitlines()[0]}, load average "
              f"{os.getloadavg()[0]:.1f}")
        print(f"| {'path':36s} | median ms | min ms | algbw GB/s (median) | plain / path |")
        print(f"|{'-' * 38}|-----------|--------|---------------------|--------------|")
        for name, ts in times.items():
            t = statistics.median(ts)
            print(f"| {name:36s} | {t * 1e3:9.1f} | {min(ts) * 1e3:6.1f} | "
                  f"{nbytes / t / 1e9:19.2f} | {plain / t:12.2f} |")


if __name__ == "__main__":
    main()
