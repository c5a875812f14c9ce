"""flock /tmp/hpcsgd-bench.lock .venv/bin/mpiexec -n 2 .venv/bin/python tools/bench_allreduce.py [--reps 5] [--bucket-mb 25 ...]

OSU-style bandwidth, one run, same ranks and bytes: our gradient reducer on ResNet-50-sized
gradients (the real parameter shapes, 25.6M fp32 values, 102 MB) versus one plain
``comm.Allreduce(MPI.IN_PLACE, buf)`` of the same total bytes.

Rows (time = slowest rank, median of --reps after one warm-up; bandwidth = bytes / time,
"algbw" as in OSU/nccl-tests):
- plain         one Allreduce of all the bytes, on the main thread;
- reducer comm  the reducer's communication path: every bucket handed to the communication
                thread and waited for (bucketing + thread hand-off + the allreduces);
- reducer full  the same plus packing from .grad: the post-accumulate-grad hook of every
                parameter called back to back (divide by world size into the bucket), then
                synchronize(); what a step pays when backward leaves no time to overlap;
- blocking      the baseline reducer: pack and allreduce every bucket in synchronize();
- bf16 wire / hierarchical: the reducer's communication path with those options.
The ratio column is plain time / row time (1.0 = as fast as the plain Allreduce).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from mpi4py import MPI  # noqa: E402

from hpcsgd.comm import build_reducer  # noqa: E402
from hpcsgd.config import CommConfig  # noqa: E402
from hpcsgd.models import build_model  # noqa: E402
from hpcsgd.world import init_world  # noqa: E402


def timed(world, fn, reps: int) -> float:
    """Median over reps of the slowest rank's time for fn() (after one warm-up call)."""
    fn()
    times = []
    for _ in range(reps):
        world.comm.Barrier()
        t0 = time.perf_counter()
        fn()
        times.append(world.comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
    return statistics.median(times)


def comm_path(reducer):
    """Every bucket through the reducer's communication thread, then wait (sync point)."""
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
    ap.add_argument("--bucket-mb", type=float, nargs="+", default=[25.0])
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

    rows = [("plain comm.Allreduce", timed(
        world, lambda: world.comm.Allreduce(MPI.IN_PLACE, flat.numpy()), args.reps))]
    for mb in args.bucket_mb:
        variants = [("reducer comm", {}), ("bf16 wire comm", {"wire_dtype": "bfloat16"}),
                    ("hierarchical comm", {"hierarchical": True})]
        for name, options in variants:
            reducer = build_reducer(model, CommConfig(bucket_mb=mb, **options), world)
            rows.append((f"{name} ({len(reducer.buckets)} x {mb:g} MB)",
                         timed(world, comm_path(reducer), args.reps)))
            if not options:
                rows.append((f"reducer full ({mb:g} MB)",
                             timed(world, full_path(reducer, params, grads), args.reps)))
            reducer.close()
        reducer = build_reducer(model, CommConfig(bucket_mb=mb, overlap=False), world)
        rows.append((f"blocking reducer ({mb:g} MB)",
                     timed(world, blocking_path(reducer, params, grads), args.reps)))
        reducer.close()

    nodes = world.num_nodes  # collective
    if world.is_root:
        plain = rows[0][1]
        print(f"# {world.size} ranks on {nodes} node(s), {nbytes / 1e6:.1f} MB of "
              f"ResNet-50 gradients ({numel} fp32), median of {args.reps}, "
              f"{MPI.Get_library_version().splitlines()[0]}")
        print(f"| {'path':44s} | time ms | algbw GB/s | plain / path |")
        print(f"|{'-' * 46}|---------|------------|--------------|")
        for name, t in rows:
            print(f"| {name:44s} | {t * 1e3:7.1f} | {nbytes / t / 1e9:10.2f} | "
                  f"{plain / t:12.2f} |")


if __name__ == "__main__":
    main()
