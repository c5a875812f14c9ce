"""The faults a soak round injects, and one round: launch the job, inject the round's fault,
wait until every process of the job is gone, and record what happened (judged after by
tools/soak/judge.py)."""
from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

from hpcsgd.exits import leaked_mpi_segments, mpi_segment_files
from tools.soak.job import END_LIMIT_S, Job, losses, write_job
from tools.soak.judge import judge
from hpcsgd.store.lmdb_store import LMDBReader

SIGNALS = {"sigkill": signal.SIGKILL, "sigstop": signal.SIGSTOP,
           "sigusr1": signal.SIGUSR1, "sigterm": signal.SIGTERM}


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


def run_round(i: int, fault: str, rng: random.Random, base: Path, data: Path,
              reference: dict[int, float], ref_time: float, epochs: float) -> dict:
    folder = base / f"round_{i:03d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rec = {"round": i, "fault": fault, "rank": None, "injected_s": None, "step": None}
    if fault == "corrupt":
        count = rng.randint(1, 3)
        rec["keys"] = corrupt_copy(data, folder / "data", rng, count)
        data = folder / "data"
    write_job(folder, data, epochs)
    total = max(reference)
    rank = rng.randrange(4)
    delay = rng.uniform(0.5, 0.9 * ref_time)       # sigkill: any time after launch
    at_step = rng.randint(2, total - 4)             # the others: once training runs
    shm_before = mpi_segment_files()
    job = Job(folder)
    injected = None
    while fault in SIGNALS and job.proc.poll() is None:
        job.sample()
        ready = time.time() - job.t0 >= delay if fault == "sigkill" else \
            len(job.metrics("train")) >= at_step
        pid = job.rank_pids().get(rank)
        if ready and pid:
            os.kill(pid, SIGNALS[fault])
            injected = time.time()
            rec.update(rank=rank, pid=pid, injected_s=round(injected - job.t0, 2),
                       step=len(job.metrics("train")))
            break
        time.sleep(0.05)
    code, gone, survivors = job.wait_gone(END_LIMIT_S + (injected or time.time()) - time.time()
                                          if injected else 30 * ref_time)
    err = job.output()
    leaked = leaked_mpi_segments(shm_before)
    rec["shm_leaked_bytes"] = sum(p.stat().st_size for p in leaked)
    for p in leaked:  # garbage once unmapped; removed so that 50 rounds do not fill /dev/shm
        p.unlink(missing_ok=True)
    rec.update(exit=code, survivors=survivors, processes=len(job.tree),
               end_s=round(gone - injected, 2) if injected else None,
               wall_s=round(gone - job.t0, 2), missed=fault != "none" and fault != "corrupt"
               and injected is None)
    if fault == "none":
        rec["loss_equal"] = losses(job) == reference
    elif fault in ("sigusr1", "sigterm"):
        stopped = job.metrics("stopped")
        rec["stopped_step"] = stopped[-1]["step"] if stopped else None
        resumed = Job(folder, "--checkpoint.resume=auto")
        rcode, _, rsurv = resumed.wait_gone(30 * ref_time)
        rec.update(resume_exit=rcode, resume_survivors=rsurv,
                   resumed_from=resumed.metrics("start")[-1]["step"]
                   if resumed.metrics("start") else None)
        got = losses(resumed)
        rec["loss_equal"] = got == reference
        if got != reference:
            rec["loss_diff_steps"] = sorted(s for s in reference if got.get(s) != reference[s])[:10]
    elif fault == "corrupt":
        final = job.metrics("summary")
        rec["corrupt_counted"] = final[-1].get("corrupt_records") if final else None
    judge(rec, err)
    job.log.close()
    return rec
