""".venv/bin/mpiexec -n 2 .venv/bin/python tools/measure_node.py allreduce
.venv/bin/python tools/measure_node.py compute [--batches 4 8 16 32] [--threads N]

Measure this machine's inputs to the scaling model (hpcsgd.scaling) and merge them into
docs/measurements/this_machine.json (--out), which the model reads; the model itself never
imports torch or MPI. `allreduce` times comm.Allreduce(MPI.IN_PLACE, float32 array) from
4 KB to 100 MB and fits alpha (small messages) and beta (large ones). `compute` times
ResNet-50 training steps (forward + backward + SGD with momentum, random 224x224 images) at
several local batches, a float32 add (the reduction cost gamma) and a STREAM-like triad (the
update cost). Keep the machine otherwise idle: the load average is recorded with the result.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "measurements" / "this_machine.json"
SIZES = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 100 << 20]


def _merge(path: Path, key: str, value: dict) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    data.setdefault("machine", {}).update(_machine())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def fit_alpha_beta(sizes, times, steps: int) -> tuple[float, float]:
    """alpha from the small messages (<= 256 KB), beta from the large ones (>= 16 MB).

    One straight line fits neither end: messages that stay in cache move several times faster
    per byte than the 25 MB gradient buckets, and those are what the model needs.
    """
    n = np.asarray(sizes, float)
    t = np.asarray(times, float)
    small, large = n <= 256 << 10, n >= 16 << 20
    slope_s, icpt_s = np.polyfit(n[small], t[small], 1)
    slope_l, _ = np.polyfit(n[large], t[large], 1)
    return float(max(icpt_s, 0.0) / steps), float(slope_l)


def measure_allreduce(out: Path) -> None:
    from hpcsgd.mpi_start import MPI  # the node segment released at start, as in a job

    comm = MPI.COMM_WORLD
    rows = []
    for nbytes in SIZES:
        buf = np.ones(nbytes // 4, dtype=np.float32)
        reps = max(3, min(200, int(2e8 // nbytes)))
        comm.Allreduce(MPI.IN_PLACE, buf)  # warm-up: connection set-up, page faults
        samples = []
        for _ in range(reps):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            # the slowest rank defines the collective's time (small control message)
            samples.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        rows.append({"bytes": nbytes, "reps": reps, "median_s": float(np.median(samples)),
                     "min_s": float(np.min(samples))})
    if comm.rank != 0:
        return
    p = comm.size
    # MPICH uses Rabenseifner for these sizes: 2*log2(p) latency steps (Thakur et al. 2005)
    steps = 2 * int(np.ceil(np.log2(p)))
    alpha, beta_eff = fit_alpha_beta([r["bytes"] for r in rows], [r["median_s"] for r in rows],
                                     steps)
    _merge(out, "allreduce", {
        "ranks": p, "transport": "shared memory (one node)",
        "mpi": MPI.Get_library_version().splitlines()[0], "rows": rows,
        "fit_model": "t = 2*log2(p)*alpha + n*beta_eff; alpha from <= 256 KB, "
                     "beta_eff from >= 16 MB",
        "alpha_s": alpha,
        # beta_eff = 2(p-1)/p * beta + (p-1)/p * gamma; the model separates them with gamma
        "beta_eff_s_per_byte": beta_eff,
        "date": time.strftime("%Y-%m-%d")})
    print(json.dumps({"alpha_us": alpha * 1e6, "GB/s_eff": 1e-9 / beta_eff}))


def measure_compute(out: Path, batches: list[int], threads: int, note: str) -> None:
    import torch

    from hpcsgd.models.resnet import resnet50  # lazy: the scaling model itself needs no torch

    torch.set_num_threads(threads)
    model = resnet50().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    rows, load_before = [], os.getloadavg()[0]
    for b in batches:
        x = torch.randn(b, 3, 224, 224).to(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (b,))
        timed, warmup = 2, 3
        times = []
        # the first steps build the oneDNN primitives for this shape and grow the allocator
        # (ResNet-50 steps 1-4 run up to 40% slower: docs/compute.md)
        for i in range(warmup + timed):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        step = float(np.min(times))  # min: the other steps lost time to other processes
        rows.append({"local_batch": b, "step_s": step, "images_per_s": b / step, "steps": timed})
        print(f"batch {b}: {b / step:.2f} img/s", flush=True)
    n = 25_557_032  # ResNet-50 parameters (hpcsgd.models.resnet docstring)
    a = np.ones(n, np.float32)
    c = np.ones(n, np.float32)
    t0 = time.perf_counter()
    for _ in range(5):
        np.add(a, c, out=a)  # what MPI's SUM does per byte received: the gamma term
    add_s = (time.perf_counter() - t0) / 5
    t0 = time.perf_counter()
    for _ in range(5):
        np.multiply(c, 0.5, out=a)
        np.add(a, c, out=a)  # triad, 2 passes: read 3 arrays, write 2
    triad_s = (time.perf_counter() - t0) / 5
    _merge(out, "compute", {
        "model": "resnet50 (hpcsgd.models.resnet, caffe variant), fp32, channels_last, "
                 "SGD with momentum, random 224x224 inputs",
        "threads": threads, "torch": torch.__version__, "rows": rows,
        # a 1-minute load average above the thread count means the timings were shared
        "loadavg_1min_before_after": [load_before, os.getloadavg()[0]], "note": note,
        "gamma_s_per_byte": add_s / (4 * n),
        "stream_GBps": 5 * 4 * n / triad_s / 1e9,
        "date": time.strftime("%Y-%m-%d")})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="measure inputs of the scaling model")
    ap.add_argument("mode", choices=["allreduce", "compute"])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--note", default="", help="conditions of the run, stored with it")
    args = ap.parse_args(argv)
    if args.mode == "allreduce":
        measure_allreduce(args.out)
    else:
        measure_compute(args.out, args.batches, args.threads, args.note)


if __name__ == "__main__":
    main()
