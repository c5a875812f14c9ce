"""The faults a soak round injects into a running job: damaged training records, and a
signal at the round's moment (a random time, a random logged step, or rank 0 inside a
checkpoint write); a full disk is noticed here, not injected (tools/soak/checkpoints.py
mounts it)."""
from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

from hpcsgd.store.lmdb_store import LMDBReader
from tools.soak.job import Job

SIGNALS = {"sigkill": signal.SIGKILL, "sigstop": signal.SIGSTOP, "sigusr1": signal.SIGUSR1,
           "sigterm": signal.SIGTERM, "ckptkill": signal.SIGKILL, "truncate": signal.SIGUSR1}
"""The signal of each fault that sends one (truncate: a stop, then its checkpoint is cut)."""
OUT_OF_SPACE = "No space left on device"


def corrupt_copy(data: Path, dest: Path, rng: random.Random, count: int) -> list[str]:
    """Copy the data set and damage `count` training records in place; returns their keys."""
    shutil.copytree(data, dest)
    reader = LMDBReader(data / "train")  # the source: dest is opened for writing below
    picks = rng.sample(range(len(reader)), count)
    damage = {}
    for i, raw in zip(picks, reader.get_many(picks)):
        kind = rng.choice(("truncate", "garbage", "label", "bitflip-length"))
        if kind == "truncate":
            bad = raw[:rng.randrange(1, len(raw))]
        elif kind == "garbage":
            bad = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        elif kind == "label":  # a valid Datum whose label is outside [0, 10)
            bad = raw[:-1] + bytes([0x7F])
        else:  # the pixel field's length byte corrupted: every field after it shifts
            bad = bytearray(raw)
            bad[7] ^= 1 << rng.randrange(7)
            bad = bytes(bad)
        damage[reader.keys[i].tobytes()] = bad
    import lmdb  # the round's copy only: the shared data set is never written
    env = lmdb.open(str(dest / "train"), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for key, bad in damage.items():
            txn.put(key, bad)
    env.close()
    return sorted(k.decode() for k in damage)




def inject(job: Job, fault: str, *, rank: int, delay: float, at_step: int,
           ckpt_step: int) -> dict | None:
    """Wait for the round's moment, then signal `rank` (rank 0 for ckptkill); returns when it
    happened ({rank, pid, time, step}), or None if the job ended first. sigkill: `delay`
    seconds after launch; ckptkill: once rank 0's temporary file of checkpoint `ckpt_step`
    exists (the job runs with HPCSGD_FAULT_CHECKPOINT_DELAY, which holds the write open
    between the temporary file and its rename); fulldisk: no signal, the moment the output
    first reports the out-of-space error; the others: once `at_step` steps are logged."""
    ckpts = job.run_dir / "checkpoints"
    rank = 0 if fault == "ckptkill" else rank
    while job.proc.poll() is None:
        job.sample()
        steps = len(job.metrics("train"))
        if fault == "fulldisk":
            if OUT_OF_SPACE in job.output():
                return {"rank": None, "pid": None, "time": time.time(), "step": steps}
            time.sleep(0.05)
            continue
        if fault == "sigkill":
            ready = time.time() - job.t0 >= delay
        elif fault == "ckptkill":
            ready = ckpts.is_dir() and any(ckpts.glob(f".step_{ckpt_step:08d}.pt.tmp*"))
        else:
            ready = steps >= at_step
        pid = job.rank_pids().get(rank)
        if ready and pid:
            os.kill(pid, SIGNALS[fault])
            return {"rank": rank, "pid": pid, "time": time.time(), "step": steps}
        time.sleep(0.05)
    return None
