#!/usr/bin/env python3
"""ResNet-50 training throughput of one rank: hpcsgd versus a plain PyTorch loop, and versus
the bound set by this machine's measured matrix-multiply rate.

    flock /tmp/hpcsgd-bench.lock .venv/bin/python tools/bench_compute.py \
        [--batch 32] [--threads 2] [--steps 4] [--compile] [--out docs/compute.md]

For each compute variant (fp32, fp32 + channels_last, bf16 + channels_last, and optionally
torch.compile) it runs, each in a fresh process so that peak resident memory is its own:
- "plain": the textbook loop (model(x), cross_entropy, backward, SGD step) on random tensors;
- "ours": hpcsgd's compute path (hpcsgd.compute + hpcsgd.optim + the gradient reducer);
- "trainer": the whole trainer, `python -m hpcsgd.train`, on an ImageNet-style LMDB of real
  JPEGs (tools/bench_data_wait.py builds it once), with decoding, communication and metrics;
  throughput read from its metrics log.
The bound is GEMM FLOP/s / 24.6 GFLOP per ResNet-50 training image (3 x 8.2 GFLOP forward
+ backward at 224x224), in the precision of the variant.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN_GFLOP_PER_IMAGE = 24.6
VARIANTS = {
    "fp32": dict(channels_last=False, precision="fp32"),
    "fp32+channels_last": dict(channels_last=True, precision="fp32"),
    "bf16+channels_last": dict(channels_last=True, precision="bf16"),
}


def gemm_rate(dtype_name: str, threads: int, n: int = 2048, reps: int = 10) -> float:
    import torch
    torch.set_num_threads(threads)
    dtype = getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[dtype_name])
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


WARMUP_STEPS = 4
"""Untimed steps first: oneDNN primitive creation and the allocator's growth make the first
steps of ResNet-50 up to 40% slower (bf16: 11, 13, 16, 18, 18.7 img/s in the trainer)."""


def _steps_per_second(step, steps: int) -> float:
    for _ in range(WARMUP_STEPS):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)


def worker(kind: str, variant: str, batch: int, threads: int, steps: int, compile_: bool) -> dict:
    """One measurement in this process; returns img/s and peak RSS."""
    import torch
    import torch.nn.functional as F
    from hpcsgd.models import build_model
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    opts = VARIANTS[variant]
    model = build_model("resnet50", num_classes=1000)
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))

    if kind == "plain":
        if opts["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        bf16 = opts["precision"] == "bf16"

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        from mpi4py import MPI
        from hpcsgd.comm import build_reducer
        from hpcsgd.compute import autocast, prepare_model, to_layout
        from hpcsgd.config import Config
        from hpcsgd.optim import build_optimizer
        from hpcsgd.world import init_world
        cfg = Config()
        cfg.compute.channels_last = opts["channels_last"]
        cfg.compute.precision = opts["precision"]
        cfg.compute.compile = compile_
        cfg.optim.base_lr, cfg.optim.weight_decay = 0.1, 1e-4
        forward = prepare_model(model, cfg.compute)
        opt = build_optimizer(model, cfg.optim)
        reducer = build_reducer(model, cfg.comm, init_world(MPI.COMM_SELF))
        x = to_layout(x, cfg.compute)

        def step():
            with autocast(cfg.compute):
                loss = F.cross_entropy(forward(x), y)
            loss.backward()
            reducer.synchronize()
            opt.step()
            reducer.zero_grad()  # as hpcsgd.train: gradients stay the bucket slots

    rate = batch * _steps_per_second(step, steps)
    return {"img_per_s": rate,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def trainer_run(variant: str, args) -> dict:
    """The real trainer, 1 rank, on the ImageNet-style bench LMDB (real JPEGs, decode workers,
    metrics); img/s from its metrics log after the warm-up steps."""
    import tempfile
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_data_wait import bench_job, ensure_lmdb
    from hpcsgd.metrics import read_metrics
    data = ensure_lmdb(per_photo=50)
    opts = VARIANTS[variant]
    with tempfile.TemporaryDirectory() as tmp:
        job = bench_job(data, Path(tmp), "bench", data={"workers": 1},
                        train={"epochs": 100.0, "max_steps": args.steps + WARMUP_STEPS,
                               "global_batch": args.batch, "eval_every_epochs": 100.0},
                        compute={"threads": args.threads, "precision": opts["precision"],
                                 "channels_last": opts["channels_last"]},
                        optim={"weight_decay": 1e-4})
        subprocess.run([sys.executable, "-m", "hpcsgd.train", str(job)], cwd=ROOT, check=True,
                       capture_output=True, text=True)
        records = read_metrics(Path(tmp) / "runs/bench/metrics.jsonl", "train")[-args.steps:]
    # the phase times of a step (data_s, forward_s, backward_s, comm_s, update_s), not img_per_s
    seconds = sum(sum(v for k, v in r.items() if k.endswith("_s") and k != "img_per_s")
                  for r in records)
    data_wait = sum(r.get("data_s", 0.0) for r in records)
    return {"img_per_s": args.batch * len(records) / seconds,
            "data_wait_fraction": data_wait / seconds,
            "peak_rss_mb": max(r.get("max_rss_mb", 0.0) for r in records)}


def _spawn(kind, variant, args, compile_=False) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--variant", variant,
           "--batch", str(args.batch), "--threads", str(args.threads), "--steps", str(args.steps)]
    if compile_:
        cmd.append("--compile")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--no-trainer", action="store_true",
                   help="skip the whole-trainer runs (they build data/imagenet-bench once)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", help="write the table as markdown here")
    p.add_argument("--worker", choices=["plain", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.variant, args.batch, args.threads, args.steps,
                                args.compile)))
        return 0

    rates = {prec: gemm_rate(prec, args.threads) for prec in ("fp32", "bf16")}
    print(f"GEMM 2048^3 on {args.threads} threads: fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s", flush=True)
    rows = []
    for variant in args.variants.split(","):
        for compile_ in ([False, True] if args.compile else [False]):
            label = variant + ("+compile" if compile_ else "")
            bound = rates[VARIANTS[variant]["precision"]] / 1e9 / TRAIN_GFLOP_PER_IMAGE
            plain = _spawn("plain", variant, args)
            ours = _spawn("ours", variant, args, compile_)
            row = {"variant": label, "plain": plain, "ours": ours, "bound": bound}
            if not args.no_trainer and not compile_:
                row["trainer"] = trainer_run(variant, args)
            rows.append(row)
            print(_format_row(row), flush=True)
    table = _table(rows, args, rates)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


def _format_row(r) -> str:
    t = r.get("trainer")
    return (f"{r['variant']:24s} plain {r['plain']['img_per_s']:6.2f} img/s  ours "
            f"{r['ours']['img_per_s']:6.2f} ({r['ours']['img_per_s'] / r['plain']['img_per_s']:.3f}"
            f" of plain, {r['ours']['img_per_s'] / r['bound']:.0%} of bound {r['bound']:.1f})"
            + (f"  trainer {t['img_per_s']:6.2f} ({t['img_per_s'] / r['plain']['img_per_s']:.3f})"
               if t else ""))


def _table(rows, args, rates) -> str:
    lines = [f"ResNet-50, local batch {args.batch}, 1 rank, {args.threads} threads, "
             f"{args.steps} timed steps after {WARMUP_STEPS} warm-up steps, the same in all three "
             "(a fresh process each). GEMM fp32 "
             f"{rates['fp32'] / 1e9:.0f} GFLOP/s, bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s; bound = "
             f"GEMM / {TRAIN_GFLOP_PER_IMAGE} GFLOP per image.", "",
             "| variant | plain loop img/s | hpcsgd compute img/s | ours/plain | bound img/s | "
             "ours/bound | whole trainer img/s | trainer/plain | data wait | peak RSS plain / "
             "ours / trainer (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r.get("trainer")
        lines.append(
            f"| {r['variant']} | {r['plain']['img_per_s']:.2f} | {r['ours']['img_per_s']:.2f} | "
            f"{r['ours']['img_per_s'] / r['plain']['img_per_s']:.3f} | {r['bound']:.1f} | "
            f"{r['ours']['img_per_s'] / r['bound']:.0%} | "
            + (f"{t['img_per_s']:.2f} | {t['img_per_s'] / r['plain']['img_per_s']:.3f} | "
               f"{t['data_wait_fraction']:.2%} | " if t else "- | - | - | ")
            + f"{r['plain']['peak_rss_mb']:.0f} / {r['ours']['peak_rss_mb']:.0f} / "
            + (f"{t['peak_rss_mb']:.0f} |" if t else "- |"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
