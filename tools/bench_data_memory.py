#!/usr/bin/env python3
"""Resident memory of the staged LMDB with several ranks and their decode workers on one node.

    flock /tmp/hpcsgd-bench.lock .venv/bin/mpiexec -n 4 .venv/bin/python tools/bench_data_memory.py

Every rank builds the real loaders (LMDB staged in /dev/shm once per node, 2 decode workers per
rank) over data/imagenet-bench (made by tools/bench_data_wait.py) and reads 3 epochs plus the
evaluation split, so every process has touched most pages. Then each rank reads, for itself and
its workers, /proc/<pid>/smaps: the Rss and Pss of the mapping of the staged data.mdb, and
/proc/<pid>/smaps_rollup: the process's total Pss. Pss divides a shared page among the
processes that map it: if the LMDB sits in RAM once, the Pss of its mapping summed over all
processes is at most its size, while the Rss sum counts it once per process.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from mpi4py import MPI  # noqa: E402

from hpcsgd.config import Config  # noqa: E402
from hpcsgd.data import build_loaders, eval_batches  # noqa: E402
from hpcsgd.run.world import init_world  # noqa: E402

MIB = 1 << 20


def mapping_kib(pid: int, suffix: str) -> dict:
    """Summed fields (kB) of the mappings of a file whose path ends with `suffix`."""
    totals, current = {"Rss": 0, "Pss": 0, "Shared_Clean": 0, "Private_Clean": 0}, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                current = len(parts) >= 6 and parts[-1].endswith(suffix)
            elif current and parts[0].rstrip(":") in totals:
                totals[parts[0].rstrip(":")] += int(parts[1])
    return totals


def rollup_pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lmdb", default=str(ROOT / "data/imagenet-bench"), help="folder with train/, val/")
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    world = init_world(MPI.COMM_WORLD)
    cfg = Config()
    cfg.data.name, cfg.data.path, cfg.data.eval_split = "imagenet", args.lmdb, "val"
    cfg.data.workers, cfg.data.stage_dir = 2, "/dev/shm/hpcsgd-memory"
    cfg.model.num_classes = len((Path(cfg.data.path) / "train/classes.txt").read_text().split())
    loader, eval_source = build_loaders(cfg, world, local_batch=32)
    for epoch in range(args.epochs):
        for _ in loader.epoch(epoch):
            pass
    for _ in eval_batches(eval_source, rank=world.rank, size=world.size, batch=32):
        pass
    staged = loader.source.reader.path / "data.mdb"
    size = staged.stat().st_size
    world.comm.Barrier()  # sync point: everyone has read before anyone measures
    rows = []
    for role, pid in [("rank", os.getpid()),
                      *[("worker", p) for p in loader.source.pool.pids]]:
        m = mapping_kib(pid, str(staged))
        rows.append((world.rank, role, pid, m["Rss"], m["Pss"], rollup_pss_kib(pid)))
    every = [r for rank_rows in world.comm.gather(rows) or [] for r in rank_rows]
    if world.rank == 0:
        print(f"staged {staged} ({size / MIB:.1f} MiB) on one node; {world.size} ranks x "
              f"{len(loader.source.pool.pids)} decode workers")
        print(f"{'rank':>4s} {'process':>7s} {'pid':>7s} {'LMDB Rss MiB':>13s} "
              f"{'LMDB Pss MiB':>13s} {'process Pss MiB':>16s}")
        for rank, role, pid, rss, pss, total in every:
            print(f"{rank:4d} {role:>7s} {pid:7d} {rss / 1024:13.1f} {pss / 1024:13.1f} "
                  f"{total / 1024:16.1f}")
        rss = sum(r[3] for r in every) / 1024
        pss = sum(r[4] for r in every) / 1024
        print(f"LMDB mapping over {len(every)} processes: Rss sum {rss:.1f} MiB "
              f"({rss / (size / MIB):.1f}x the file), Pss sum {pss:.1f} MiB "
              f"({pss / (size / MIB):.2f}x the file: {'one copy' if pss <= size / MIB * 1.01 else 'MORE THAN ONE COPY'})")
        print(f"all processes' Pss: {sum(r[5] for r in every) / 1024:.0f} MiB")
    loader.source.pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
