"""A rank that never reaches one of the loop's own collectives (a skipped log allgather, a
stuck rank) ends the whole job within comm.stall_timeout_s, naming the collective, instead
of leaving the others spinning until someone kills them. Real `mpiexec -n 2`; the stuck rank
is made by a test-only patch of that rank in the launched script."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpi4py import MPI

from helpers import tiny_dataset

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")

SCRIPT = """
import sys, time
from mpi4py import MPI
import hpcsgd.run.meter as meter
real = meter.Meter.log_point

def log_point(self, step, optimizer):
    if MPI.COMM_WORLD.rank == 1 and step == 4:
        time.sleep(600)  # stuck: never reaches the train log's allgather
    return real(self, step, optimizer)

meter.Meter.log_point = log_point
from hpcsgd.train import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_rank_that_never_reaches_the_log_allgather_ends_the_job(tmp_path):
    tiny_dataset(tmp_path / "data")
    (tmp_path / "job.toml").write_text(
        '[data]\npath = "data"\naugment = false\n[train]\nepochs = 2.0\nglobal_batch = 64\n'
        'log_every_steps = 2\n[compute]\nthreads = 1\n[comm]\nstall_timeout_s = 5.0\n')
    (tmp_path / "stuck.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_"))}
    t0 = time.time()
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "stuck.py", "job.toml"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 4, (res.returncode, res.stderr)  # the stall exit code
    assert time.time() - t0 < 60                        # 5 s limit, not the 600 s sleep
    # the watchdog of the main thread's collectives names the collective and the missing rank
    assert "(the train log's allgather at step 4) has not completed after 5." in res.stderr, \
        res.stderr
    assert "ranks that have not arrived: [1]" in res.stderr, res.stderr
