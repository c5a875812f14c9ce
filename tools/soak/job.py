"""One soak job: the small data set and job file every round trains on, and `Job`, an
`mpiexec -n 4 python -m hpcsgd.train` run whose process tree is sampled while it runs, so that
after mpiexec exits the soak can tell whether any of its processes survived."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hpcsgd.run.metrics import read_metrics
from hpcsgd.store.lmdb_store import LMDBReader, LMDBWriter

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")
STALL_S = 5.0      # comm.stall_timeout_s of the soak's job
END_LIMIT_S = 60   # a job not gone this long after the fault is a hang
# a checkpoint every epoch (steps 16 and 32 of 48): a SIGKILL can land in a write, and a
# damaged newest checkpoint has an older one to fall back to
JOB = ('[data]\npath = "{data}"\naugment = true\nmax_corrupt_fraction = 0.05\n'
       '[model]\nname = "lenet"\n[train]\nepochs = {epochs}\nglobal_batch = 64\n'
       'log_every_steps = 1\neval_every_epochs = {epochs}\n[schedule]\nwarmup_epochs = 1.0\n'
       '[optim]\nbase_lr = 0.02\n[compute]\nthreads = 1\n'
       '[comm]\nstall_timeout_s = {stall}\n[checkpoint]\nevery_epochs = 1.0\n'
       '[run]\nout_dir = "runs"\n')


def make_data(dest: Path, n_train: int, n_test: int) -> None:
    """The first records of the real Fashion-MNIST LMDBs, copied byte for byte."""
    for split, n in (("train", n_train), ("test", n_test)):
        src = LMDBReader(ROOT / "data" / "fashion-mnist" / split)
        with LMDBWriter(dest / split, map_size=1 << 28) as w:
            for i, raw in enumerate(src.get_many(range(n))):
                w.put_bytes(raw, src.keys[i].tobytes())


def write_job(folder: Path, data: Path, epochs: float) -> None:
    (folder / "job.toml").write_text(JOB.format(data=data, epochs=epochs, stall=STALL_S))


def _env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_"))}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


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
    """One mpiexec run; samples its process tree so that survivors can be found after.
    `env`: extra environment variables (the checkpoint-write delay of a ckptkill round)."""

    def __init__(self, folder: Path, *overrides: str, env: dict | None = None):
        self.folder = folder
        self.t0 = time.time()
        self.log = open(folder / f"output_{int(self.t0 * 1000)}.txt", "w+")
        self.proc = subprocess.Popen(
            [MPIEXEC, "-n", "4", sys.executable, "-m", "hpcsgd.train", "job.toml", *overrides],
            cwd=folder, env=_env(env or {}), stdout=self.log, stderr=subprocess.STDOUT)
        self.tree: dict[int, str] = {}  # pid -> start time, of every process seen under it

    @property
    def run_dir(self) -> Path:
        return self.folder / "runs" / "run"

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
        path = self.run_dir / "metrics.jsonl"
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

    def output(self) -> str:
        """What mpiexec printed so far (the ranks' stdout and stderr)."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


def losses(job: Job) -> dict[int, float]:
    """step -> logged loss; a step logged again by a resumed run keeps its later value."""
    return {r["step"]: r["loss"] for r in job.metrics("train")}
