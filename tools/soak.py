"""Fault soak: many real 4-rank training runs, each hit by one fault drawn by a seeded RNG.

    PYTHONPATH=. .venv/bin/python tools/soak.py --rounds 50 --seed 0 --out /tmp/hpcsgd-soak

Each round launches `mpiexec -n 4 python -m hpcsgd.train` on a small LeNet job (the first
records of data/fashion-mnist) and injects one fault: SIGKILL of a random rank at a random
time after launch, SIGSTOP of a rank (the stall watchdog must end the job, exit 4),
SIGUSR1 / SIGTERM to a rank (stop with a checkpoint, exit 3; the round then resumes with
checkpoint.resume=auto and its loss must equal an uninterrupted reference run's at every
logged step), corrupt records written into the round's copy of the LMDB (counted and
skipped, exit 0), or nothing. The process tree under mpiexec is sampled while the job runs:
after it ends no process of it may survive. One JSON line per round goes to
<out>/rounds.jsonl; the summary table (markdown) is printed and written to <out>/summary.md.
Not part of tools/test.sh: 50 rounds took 34 minutes on the loaded 2-core machine
(docs/reliability.md).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hpcsgd.exits import leaked_mpi_segments, mpi_segment_files
from hpcsgd.run.metrics import read_metrics
from hpcsgd.store.lmdb_store import LMDBReader, LMDBWriter

ROOT = Path(__file__).resolve().parent.parent
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")
FAULTS = ("none", "sigkill", "sigstop", "sigusr1", "sigterm", "corrupt")
EXPECTED = {"none": "exit 0, loss = reference", "sigkill": "exit != 0",
            "sigstop": "exit 4 (stall)", "sigusr1": "exit 3, resume = reference",
            "sigterm": "exit 3, resume = reference", "corrupt": "exit 0, counted"}
NAMED = {"none": "-", "sigkill": "its pid", "sigstop": "its rank", "sigusr1": "the signal",
         "sigterm": "the signal", "corrupt": "every key"}
"""What the job's output must name for `named` (recorded, not part of the outcome)."""
STALL_S = 5.0      # comm.stall_timeout_s of the soak's job
END_LIMIT_S = 60   # a job not gone this long after the fault is a hang
JOB = ('[data]\npath = "{data}"\naugment = true\nmax_corrupt_fraction = 0.05\n'
       '[model]\nname = "lenet"\n[train]\nepochs = {epochs}\nglobal_batch = 64\n'
       'log_every_steps = 1\neval_every_epochs = {epochs}\n[schedule]\nwarmup_epochs = 1.0\n'
       '[optim]\nbase_lr = 0.02\n[compute]\nthreads = 1\n'
       '[comm]\nstall_timeout_s = {stall}\n[run]\nout_dir = "runs"\n')


def make_data(dest: Path, n_train: int, n_test: int) -> None:
    """The first records of the real Fashion-MNIST LMDBs, copied byte for byte."""
    for split, n in (("train", n_train), ("test", n_test)):
        src = LMDBReader(ROOT / "data" / "fashion-mnist" / split)
        with LMDBWriter(dest / split, map_size=1 << 28) as w:
            for i, raw in enumerate(src.get_many(range(n))):
                w.put_bytes(raw, src.keys[i].tobytes())


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


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_"))}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _children() -> dict[int, int]:
    """pid -> parent pid of every process we can see."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            out[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def _start_time(pid: int) -> str | None:
    """Start time in ticks: tells a live process from a later one reusing its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and _start_time(pid) == started


class Job:
    """One mpiexec run; samples its process tree so that survivors can be found after."""

    def __init__(self, folder: Path, *overrides: str):
        self.folder = folder
        self.t0 = time.time()
        self.log = open(folder / f"output_{int(self.t0 * 1000)}.txt", "w+")
        self.proc = subprocess.Popen(
            [MPIEXEC, "-n", "4", sys.executable, "-m", "hpcsgd.train", "job.toml", *overrides],
            cwd=folder, env=_env(), stdout=self.log, stderr=subprocess.STDOUT)
        self.tree: dict[int, str] = {}  # pid -> start time, of every process seen under it

    def sample(self) -> None:
        parents, found, todo = _children(), set(), [self.proc.pid]
        while todo:
            pid = todo.pop()
            kids = [c for c, p in parents.items() if p == pid and c not in found]
            found.update(kids)
            todo += kids
        for pid in found:
            if pid not in self.tree and (st := _start_time(pid)):
                self.tree[pid] = st

    def rank_pids(self) -> dict[int, int]:
        """rank -> pid, from each process's PMI_RANK (known before the run's first log line)."""
        ranks = {}
        for pid, started in self.tree.items():
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for item in env:
                if item.startswith(b"PMI_RANK=") and _alive(pid, started):
                    ranks[int(item[9:])] = pid
        return ranks

    def metrics(self, tag: str) -> list[dict]:
        path = self.folder / "runs" / "run" / "metrics.jsonl"
        return read_metrics(path, tag) if path.exists() else []

    def wait_gone(self, limit: float) -> tuple[int | None, float, list[int]]:
        """Wait for mpiexec and every process seen under it. Returns (exit code, time the
        last one went, pids still alive at the limit: then killed, they are ours)."""
        deadline = time.time() + limit
        while time.time() < deadline:
            self.sample()
            code = self.proc.poll()
            live = [p for p, st in self.tree.items() if _alive(p, st)]
            if code is not None and not live:
                return code, time.time(), []
            time.sleep(0.05)
        live = [p for p, st in self.tree.items() if _alive(p, st)]
        for pid in live + [self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        code = self.proc.wait()
        return code, time.time(), live

    def stderr(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


def named(fault: str, rank: int, pid: int, output: str) -> bool:
    """Whether the job's output names the faulty process: mpiexec's report of a killed
    process gives its pid; the stall watchdog's lists the ranks that did not arrive or do
    not answer; a stop names the signal (the ranks agree on it, whichever received it)."""
    if fault == "sigkill":
        return f"PID {pid} " in output
    if fault == "sigstop":
        lists = re.findall(r"have not arrived: \[([0-9, ]*)\]; ranks not responding "
                           r"\(dead or stuck inside MPI\): \[([0-9, ]*)\]", output)
        return any(str(rank) in re.split(r"[, ]+", a + "," + b) for a, b in lists)
    return f"stopped by {fault.upper()} at step" in output


def stalled_collective(output: str) -> str | None:
    """The collective a stall report names: the reducer watchdog's or the main thread's."""
    m = re.search(r"collective #\d+ \((.*?)\) has not completed|rank \d+: (.*?) unfinished "
                  r"after", output)
    return (m.group(1) or m.group(2)) if m else None


def losses(job: Job) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in job.metrics("train")}


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
    (folder / "job.toml").write_text(JOB.format(data=data, epochs=epochs, stall=STALL_S))
    total = max(reference)
    rank = rng.randrange(4)
    delay = rng.uniform(0.5, 0.9 * ref_time)       # sigkill: any time after launch
    at_step = rng.randint(2, total - 4)             # the others: once training runs
    shm_before = mpi_segment_files()
    job = Job(folder)
    injected = None
    while fault in ("sigkill", "sigstop", "sigusr1", "sigterm") and job.proc.poll() is None:
        job.sample()
        ready = time.time() - job.t0 >= delay if fault == "sigkill" else \
            len(job.metrics("train")) >= at_step
        pid = job.rank_pids().get(rank)
        if ready and pid:
            sig = {"sigkill": signal.SIGKILL, "sigstop": signal.SIGSTOP,
                   "sigusr1": signal.SIGUSR1, "sigterm": signal.SIGTERM}[fault]
            os.kill(pid, sig)
            injected = time.time()
            rec.update(rank=rank, pid=pid, injected_s=round(injected - job.t0, 2),
                       step=len(job.metrics("train")))
            break
        time.sleep(0.05)
    code, gone, survivors = job.wait_gone(END_LIMIT_S + (injected or time.time()) - time.time()
                                          if injected else 30 * ref_time)
    err = job.stderr()
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


def judge(rec: dict, output: str) -> None:
    """Set the round's `named`, `stalled_collective` and `ok` from its record and the faulted
    run's output (also re-scores a JSONL written by an older version: --rescore)."""
    fault, code, injected = rec["fault"], rec["exit"], rec["injected_s"] is not None
    rec["named"] = named(fault, rec["rank"], rec.get("pid"), output) if injected else None
    ok = not rec["survivors"]
    if fault == "none":
        ok &= code == 0 and rec["loss_equal"]
    elif fault == "sigkill":
        ok &= code != 0 if injected else code == 0
    elif fault == "sigstop":
        ok &= code == 4
        rec["stalled_collective"] = stalled_collective(output)
    elif fault in ("sigusr1", "sigterm"):
        ok &= code == 3 and rec["resume_exit"] == 0 and not rec["resume_survivors"] \
            and rec["loss_equal"] and rec["resumed_from"] == rec["stopped_step"]
    elif fault == "corrupt":
        ok &= code == 0 and bool(rec["corrupt_counted"])
        rec["named"] = all(f"'{k}'" in output for k in rec["keys"])
    rec["ok"] = bool(ok)
    rec.pop("stderr_tail", None)
    if not ok:
        rec["stderr_tail"] = output[-1500:]


def rescore(out: Path) -> list[dict]:
    """Re-judge <out>/rounds.jsonl from each round's saved output (its first run's)."""
    rounds = [json.loads(line) for line in open(out / "rounds.jsonl")]
    for rec in rounds:
        first = sorted((out / f"round_{rec['round']:03d}").glob("output_*.txt"))[0]
        judge(rec, first.read_text(errors="replace"))
    with open(out / "rounds.jsonl", "w") as f:
        f.writelines(json.dumps(rec) + "\n" for rec in rounds)
    return rounds


def summary_table(rounds: list[dict]) -> str:
    lines = ["| fault | rounds | expected outcome | met | processes left | output names | "
             "named | median / max s to the last process gone |", "|---|---|---|---|---|---|---|---|"]
    for fault in FAULTS:
        rs = [r for r in rounds if r["fault"] == fault]
        if not rs:
            continue
        ends = [r["end_s"] for r in rs if r.get("end_s") is not None]
        timing = f"{statistics.median(ends):.1f} / {max(ends):.1f}" if ends else "-"
        named = "-" if fault == "none" else f"{sum(bool(r.get('named')) for r in rs)}"
        lines.append(f"| {fault} | {len(rs)} | {EXPECTED[fault]} | {sum(r['ok'] for r in rs)} "
                     f"| {sum(bool(r['survivors']) for r in rs)} | {NAMED[fault]} | {named} "
                     f"| {timing} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/hpcsgd-soak"))
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--train-records", type=int, default=1024)
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help="comma-separated kinds to draw from (default: all)")
    ap.add_argument("--rescore", action="store_true",
                    help="only re-judge <out>/rounds.jsonl and print the table")
    args = ap.parse_args(argv)
    if args.rescore:
        rounds = rescore(args.out)
        print(summary_table(rounds))
        return 0 if all(r["ok"] for r in rounds) else 1
    rng = random.Random(args.seed)
    kinds = args.faults.split(",")
    if set(kinds) - set(FAULTS):
        ap.error(f"--faults: unknown kinds {sorted(set(kinds) - set(FAULTS))}; known: {FAULTS}")
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    if not (data / "test" / "data.mdb").exists():
        make_data(data, args.train_records, 256)
    ref_dir = args.out / "reference"
    shutil.rmtree(ref_dir, ignore_errors=True)
    ref_dir.mkdir()
    (ref_dir / "job.toml").write_text(JOB.format(data=data, epochs=args.epochs, stall=STALL_S))
    ref = Job(ref_dir)
    code, gone, _ = ref.wait_gone(1800)
    if code != 0:
        sys.exit(f"soak: the reference run failed with exit {code}:\n{ref.stderr()[-2000:]}")
    reference, ref_time = losses(ref), gone - ref.t0
    print(f"reference: {len(reference)} steps in {ref_time:.1f} s", flush=True)
    rounds = []
    with open(args.out / "rounds.jsonl", "w") as out:
        for i in range(args.rounds):
            fault = rng.choice(kinds)
            rec = run_round(i, fault, rng, args.out, data, reference, ref_time, args.epochs)
            rounds.append(rec)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            print(f"round {i}: {fault} rank={rec['rank']} step={rec['step']} exit={rec['exit']}"
                  f" end_s={rec['end_s']} ok={rec['ok']}", flush=True)
    table = summary_table(rounds)
    (args.out / "summary.md").write_text(table + "\n")
    print(table)
    return 0 if all(r["ok"] for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
