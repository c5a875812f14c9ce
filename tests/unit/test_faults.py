"""Failures of a real `mpiexec -n 4` job: stop signals, resume, a writer killed mid-checkpoint,
a corrupt checkpoint. Each test launches its own mpiexec (skipped inside one)."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mpi4py import MPI

from hpcsgd.run.checkpoint import load_checkpoint
from hpcsgd.run.metrics import read_metrics
from hpcsgd.exits import EXIT_REQUEUE
from helpers import tiny_dataset

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")

JOB = ('[data]\npath = "data"\naugment = true\n[model]\nname = "lenet"\n'
       '[train]\nepochs = 12.0\nglobal_batch = 64\nlog_every_steps = 1\neval_every_epochs = 6.0\n'
       '[schedule]\nwarmup_epochs = 1.0\n[optim]\nbase_lr = 0.02\n[compute]\nthreads = 1\n')


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_"))}
    return {**env, **extra}


def _start(folder, *overrides, **env):
    cmd = [MPIEXEC, "-n", "4", sys.executable, "-m", "hpcsgd.train", "job.toml", *overrides]
    return subprocess.Popen(cmd, cwd=folder, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _metrics(folder, name, tag):
    path = folder / "runs" / name / "metrics.jsonl"
    return read_metrics(path, tag) if path.exists() else []


def _rank_pid(folder, name, rank):
    return int(_metrics(folder, name, "start")[-1]["pids"][rank].split(":")[1])


@pytest.fixture
def job(tmp_path):
    tiny_dataset(tmp_path / "data")
    (tmp_path / "job.toml").write_text(JOB)
    return tmp_path


def test_stop_signal_checkpoints_and_resume_matches_the_uninterrupted_run(job):
    full = _start(job, "--run.name=full")
    assert full.wait(timeout=300) == 0, full.stderr.read()

    part = _start(job, "--run.name=part")
    assert _wait_for(lambda: len(_metrics(job, "part", "train")) >= 20)
    os.kill(_rank_pid(job, "part", 2), signal.SIGUSR1)  # one rank only: all must agree
    assert part.wait(timeout=120) == EXIT_REQUEUE, part.stderr.read()
    stopped = _metrics(job, "part", "stopped")
    assert len(stopped) == 1 and stopped[0]["signal"] == "SIGUSR1"
    k = stopped[0]["step"]
    assert 20 <= k < 96  # mid-run, mid-epoch in general (8 steps an epoch)

    resumed = _start(job, "--run.name=part", "--checkpoint.resume=auto")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert _metrics(job, "part", "start")[-1]["step"] == k

    losses = lambda name: {r["step"]: r["loss"] for r in _metrics(job, name, "train")}  # noqa
    full_loss, part_loss = losses("full"), losses("part")
    assert sorted(part_loss) == sorted(full_loss) == list(range(1, 97))
    assert all(0 < full_loss[s] < 10 for s in full_loss)  # finite: the run really trained
    assert [part_loss[s] for s in range(1, 97)] == [full_loss[s] for s in range(1, 97)]
    final = lambda name: load_checkpoint(job / "runs" / name / "final.pt")["model"]  # noqa
    for key, value in final("full").items():
        assert torch.equal(value, final("part")[key]), key


def test_writer_killed_mid_checkpoint_leaves_the_previous_one_loadable(job):
    ckpts = job / "runs" / "run" / "checkpoints"
    proc = _start(job, "--checkpoint.every_epochs=1.0", "--checkpoint.keep=5",
                  HPCSGD_FAULT_CHECKPOINT_DELAY="1.5")
    # the second checkpoint (step 16) is being written when its temporary file appears
    assert _wait_for(lambda: ckpts.is_dir() and any(
        p.name.startswith(".step_00000016.pt.tmp") for p in ckpts.iterdir()))
    os.kill(_rank_pid(job, "run", 0), signal.SIGKILL)
    killed_at = time.time()
    assert proc.wait(timeout=60) != 0          # every rank ends, none hangs
    assert time.time() - killed_at < 60
    assert not (ckpts / "step_00000016.pt").exists()
    state = load_checkpoint(ckpts / "step_00000008.pt")
    assert state["progress"]["step"] == 8 and len(state["ranks"]) == 4

    resumed = _start(job, "--checkpoint.resume=auto", "--train.epochs=3.0")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert _metrics(job, "run", "start")[-1]["step"] == 8


def test_corrupt_checkpoint_is_refused_naming_the_file(job):
    bad = job / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    res = subprocess.run([MPIEXEC, "-n", "4", sys.executable, "-m", "hpcsgd.train", "job.toml",
                          f"--checkpoint.resume={bad}"], cwd=job, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert f"checkpoint '{bad}' is corrupt or not an hpcsgd checkpoint" in res.stderr
    assert "(all ranks)" in res.stderr
