"""Pre-emption through the Slurm body script (jobs/slurm/run.sh), with a real 2-rank training:
USR1 to the batch shell (what `#SBATCH --signal=B:USR1@600` sends) -> forwarded to the ranks
-> checkpoint, exit 3 -> `scontrol requeue $SLURM_JOB_ID`; the requeued run resumes from the
checkpoint and finishes. scontrol is a stand-in that records its arguments."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpi4py import MPI

from helpers import tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))

pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_usr1_checkpoints_requeues_and_the_requeued_job_resumes(tmp_path):
    tiny_dataset(tmp_path / "data")
    (tmp_path / "job.toml").write_text(
        '[data]\npath = "data"\naugment = false\n[train]\nepochs = 12.0\nglobal_batch = 64\n'
        'log_every_steps = 2\neval_every_epochs = 100.0\n[compute]\nthreads = 1\n'
        '[run]\nname = "slurm"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.log\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_EXPECT", "OMP_", "SLURM"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", SLURM_JOB_ID="4242",
               SLURM_SUBMIT_DIR=str(tmp_path), HPCSGD_LAUNCH=f"{MPIEXEC} -n 2",
               HPCSGD_PYTHON=sys.executable)
    metrics = tmp_path / "runs" / "slurm" / "metrics.jsonl"
    run_sh = [str(ROOT / "jobs" / "slurm" / "run.sh"), "job.toml"]

    first = subprocess.Popen(run_sh, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not any(r["tag"] == "train" for r in _records(metrics)):
        assert first.poll() is None, first.stdout.read()
        assert time.time() < deadline, "training did not start"
        time.sleep(0.2)
    first.send_signal(signal.SIGUSR1)  # the batch shell, as --signal=B:USR1 does
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 3, out
    assert "USR1: asking the ranks to checkpoint" in out
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    (stopped,) = [r for r in _records(metrics) if r["tag"] == "stopped"]
    assert list((tmp_path / "runs" / "slurm" / "checkpoints").glob("step_*.pt"))

    second = subprocess.run(run_sh, cwd=tmp_path, env={**env, "SLURM_RESTART_COUNT": "1"},
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    starts = [r for r in _records(metrics) if r["tag"] == "start"]
    assert starts[-1]["step"] == stopped["step"] and starts[-1]["resumed_from"]
    summary = json.loads((tmp_path / "runs" / "slurm" / "summary.json").read_text())
    assert summary["steps"] == starts[-1]["total_steps"] > stopped["step"]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]  # once
    assert "core plan (auto" in second.stdout  # the trainer printed its plan at rank 0
