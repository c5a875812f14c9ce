"""flock /tmp/hpcsgd-bench.lock .venv/bin/mpiexec -n 2 .venv/bin/python tools/bench_ddp.py [--models resnet50 alexnet] [--batch 2] [--steps 4]

Our reducer against PyTorch DistributedDataParallel (gloo backend) on the same model, batch
and ranks, in one run: training steps (forward, backward, gradient averaging, SGD with
momentum; random images, channels_last) of two replicas started from the same weights and
fed the same images (and the same dropout masks), alternating step by step so that drift in
the machine's load hits both alike.
- ours  hpcsgd's GradientReducer: comm.backend = "mpi", buckets of --bucket-mb filled by
        post-accumulate-grad hooks and allreduced on the communication thread during backward;
- ddp   torch.nn.parallel.DistributedDataParallel(bucket_cap_mb=--bucket-mb) over gloo
        (rendezvous through MPI, hpcsgd.comm.torchdist), its defaults otherwise;
- ddp-view  the same with gradient_as_bucket_view=True (DDP without its copy back).
Neither side pins its communication threads (no core is spare when every rank computes).
Step time = slowest rank, median over --steps after one warm-up step; ratio = ours / ddp.
The two replicas' weights are compared at the end (they see the same data, so they must
agree up to summation order).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mpi4py import MPI  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from hpcsgd.comm import build_backend, build_reducer  # noqa: E402
from hpcsgd.comm.reducer import broadcast_state_  # noqa: E402
from hpcsgd.comm.torchdist import init_default_group  # noqa: E402
from hpcsgd.config import CommConfig  # noqa: E402
from hpcsgd.models import build_model  # noqa: E402
from hpcsgd.world import init_world  # noqa: E402

IMAGE = {"alexnet": 227}  # Caffe AlexNet's crop; the ResNets take 224


def make_step(model, sync, images, labels, rank):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(k: int) -> None:
        torch.manual_seed(1000 * k + rank)  # the same dropout masks on both replicas
        F.cross_entropy(model(images), labels).backward()
        sync()  # ours: the sync point; DDP: already waited at the end of backward
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def compare(world, name: str, batch: int, steps: int, bucket_mb: float) -> dict:
    torch.manual_seed(0)
    ours = build_model(name, num_classes=1000).to(memory_format=torch.channels_last)
    broadcast_state_(ours, build_backend("mpi", world))
    ddp_model = copy.deepcopy(ours)
    view_model = copy.deepcopy(ours)
    reducer = build_reducer(ours, CommConfig(bucket_mb=bucket_mb), world)
    ddp = DistributedDataParallel(ddp_model, bucket_cap_mb=bucket_mb)
    ddp_view = DistributedDataParallel(view_model, bucket_cap_mb=bucket_mb,
                                       gradient_as_bucket_view=True)
    g = torch.Generator().manual_seed(world.rank)
    side = IMAGE.get(name, 224)
    images = torch.randn(batch, 3, side, side, generator=g) \
        .contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), generator=g)
    runs = {"ours": make_step(ours, reducer.synchronize, images, labels, world.rank),
            "ddp": make_step(ddp, lambda: None, images, labels, world.rank),
            "ddp-view": make_step(ddp_view, lambda: None, images, labels, world.rank)}
    times = {k: [] for k in runs}
    for k in range(steps + 1):  # step 0 is the warm-up
        for label, step in runs.items():
            world.comm.Barrier()
            t0 = time.perf_counter()
            step(k)
            if k:
                times[label].append(world.comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
    reducer.close()
    drift = max(float((a - b).abs().max() / (b.abs().max() + 1e-12))
                for a, b in zip(ours.parameters(), ddp_model.parameters()))
    params = sum(p.numel() for p in ours.parameters())
    return {"model": name, "params": params, "times": times,
            "median": {k: statistics.median(v) for k, v in times.items()},
            "drift": world.comm.allreduce(drift, op=MPI.MAX)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50", "alexnet"])
    ap.add_argument("--batch", type=int, nargs="+", default=[2],
                    help="local batch per rank (one value, or one per model)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    args = ap.parse_args()
    world = init_world()
    threads = max(1, len(os.sched_getaffinity(0)) // world.local_size)
    torch.set_num_threads(threads)
    init_default_group(world, "gloo")
    batches = args.batch * len(args.models) if len(args.batch) == 1 else args.batch
    results = [compare(world, m, b, args.steps, args.bucket_mb)
               for m, b in zip(args.models, batches)]
    if world.is_root:
        print(f"# {world.size} ranks, {threads} compute threads/rank, buckets "
              f"{args.bucket_mb:g} MB, median of {args.steps} steps after 1 warm-up; "
              f"{MPI.Get_library_version().splitlines()[0]}, torch {torch.__version__}")
        print("| model | params | local batch | ours s | ddp s | ddp-view s | ours/ddp | "
              "ours/ddp-view | max rel. weight diff |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r, b in zip(results, batches):
            m = r["median"]
            print(f"| {r['model']} | {r['params'] / 1e6:.1f}M | {b} | {m['ours']:.3f} | "
                  f"{m['ddp']:.3f} | {m['ddp-view']:.3f} | {m['ours'] / m['ddp']:.2f} | "
                  f"{m['ours'] / m['ddp-view']:.2f} | {r['drift']:.1e} |")
        for r in results:
            for k, v in r["times"].items():
                print(f"#   {r['model']} {k}: " + " ".join(f"{t:.3f}" for t in v))


if __name__ == "__main__":
    main()
