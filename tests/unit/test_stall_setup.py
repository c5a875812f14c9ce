"""A rank stuck during the run's set-up (before the first step) ends the job within
comm.setup_timeout_s, naming the collective and the rank, instead of leaving the others in a
blocking set-up collective for ever (issue 19: every collective of the main thread watched).

Real `mpiexec -n 2` training runs on a tiny LMDB, the stuck rank made by a test-only patch of
that rank in the launched script (as tests/unit/test_stall_collectives.py does). Before the
set-up was watched, rank 1 waited for the node's copy in a blocking broadcast, and rank 0 for
rank 1 in the blocking collectives that build the backend, as long as the stuck rank took
(here 600 s).
"""
import shutil
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from helpers import run_patched_training, tiny_dataset

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")

STUCK_IN_THE_COPY = """
import hpcsgd.data.staging as staging
real = staging.stage_copy

def stage_copy(*args, **kwargs):
    time.sleep(600)  # the node's first rank (rank 0) hangs on the file system
    return real(*args, **kwargs)

staging.stage_copy = stage_copy
"""

STUCK_BUILDING_THE_MODEL = """
import hpcsgd.train as train
real = train.ImageTask.build_model

def build_model(self):
    if MPI.COMM_WORLD.rank == 1:
        time.sleep(600)  # rank 1 never comes to the next set-up collective
    return real(self)

train.ImageTask.build_model = build_model
"""


def _job(tmp_path, setup_timeout_s: float) -> str:
    tiny_dataset(tmp_path / "data")
    return (f'[data]\npath = "data"\naugment = false\nstage_dir = "{tmp_path / "stage"}"\n'
            '[train]\nepochs = 1.0\nglobal_batch = 64\n[compute]\nthreads = 1\n'
            f'[comm]\nstall_timeout_s = 300.0\nsetup_timeout_s = {setup_timeout_s}\n')


def test_a_node_leader_stuck_in_staging_is_named(tmp_path):
    res, seconds = run_patched_training(tmp_path, STUCK_IN_THE_COPY, _job(tmp_path, 5.0),
                                        timeout=240)
    assert res.returncode == 4, (res.returncode, res.stderr[-3000:])  # the stall exit code
    assert seconds < 150, seconds  # the 5 s limit (+ start-up), not the 600 s sleep
    assert "(staging train, test into" in res.stderr, res.stderr[-3000:]
    assert "ranks that have not arrived: [0]" in res.stderr, res.stderr[-3000:]


def test_a_rank_stuck_building_its_model_is_named(tmp_path):
    res, seconds = run_patched_training(tmp_path, STUCK_BUILDING_THE_MODEL,
                                        _job(tmp_path, 5.0), timeout=240)
    assert res.returncode == 4, (res.returncode, res.stderr[-3000:])
    assert seconds < 150, seconds
    assert "(building the communication backend) has not completed after" in res.stderr, \
        res.stderr[-3000:]
    assert "ranks that have not arrived: [1]" in res.stderr, res.stderr[-3000:]
