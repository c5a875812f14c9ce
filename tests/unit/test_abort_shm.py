"""An aborted or killed MPI job leaves no MPI shared-memory segment in /dev/shm: MPICH
removes its node segment in MPI_Finalize, which MPI_Abort never reaches (the fault soak
measured 4 MiB left by every stall abort, docs/reliability.md), so abort_job removes it
first; and a SIGKILL reaches nothing at all (the soak: 4 MiB after every kill after
start-up), so the names are unlinked as soon as every rank of the node has mapped them."""
import os
import signal
import subprocess
import sys
import time

from test_faults import MPIEXEC, pytestmark  # noqa: F401 (skip where mpiexec cannot run)
from hpcsgd.exits import leaked_mpi_segments, mpi_segment_files

ABORTING_JOB = """
import time
from hpcsgd.exits import abort_job
from hpcsgd.run.world import init_world
world = init_world()
world.comm.Barrier()  # the node segment is in use by both ranks
if world.rank == 1:
    abort_job(world.comm, 4)
time.sleep(60)
"""


def test_an_aborted_job_leaves_no_mpi_segment_behind(tmp_path):
    script = tmp_path / "abort.py"
    script.write_text(ABORTING_JOB)
    before = mpi_segment_files()
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0
    leaked = leaked_mpi_segments(before)  # made since `before`, mapped by no live process
    assert not leaked, f"left in /dev/shm by the aborted job: {sorted(map(str, leaked))}"


KILLED_JOB = """
import time
from hpcsgd.run.world import init_world
world = init_world()
world.comm.Barrier()  # both ranks are past init_world
if world.rank == 0:  # one line: two ranks' prints can interleave on the launcher's stdout
    print("ready", flush=True)
time.sleep(120)
"""


def _leaked_after_sigkill(tmp_path, job_text: str, ready: str) -> list:
    """Run job_text on 2 ranks, SIGKILL mpiexec, its proxy and both ranks at once when rank 0
    prints `ready`, and return the MPI segments the job left in /dev/shm."""
    script = tmp_path / "killed.py"
    script.write_text(job_text)
    before = mpi_segment_files()
    job = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, str(script)],
                           stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert job.stdout.readline().strip() == ready
        time.sleep(0.5)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    time.sleep(1.0)  # the killed processes' mappings are gone
    return leaked_mpi_segments(before)


def test_a_job_killed_by_sigkill_leaves_no_mpi_segment_behind(tmp_path):
    leaked = _leaked_after_sigkill(tmp_path, KILLED_JOB, "ready")
    assert not leaked, f"left in /dev/shm by the killed job: {sorted(map(str, leaked))}"


KILLED_AT_START_UP = """
import time
import hpcsgd.train  # every import of the training job: MPI starts among them
from mpi4py import MPI
MPI.COMM_WORLD.Barrier()  # both ranks are past their imports
if MPI.COMM_WORLD.rank == 0:
    print("imported", flush=True)
time.sleep(120)  # stands for the job's input checks before init_world (a few seconds)
"""


def test_a_job_killed_before_init_world_leaves_no_mpi_segment_behind(tmp_path):
    # The segment's name was released in init_world, after ~2 s of imports and checks since
    # MPI_Init: the fault soak's kills in that window left 4 MiB (docs/reliability.md).
    leaked = _leaked_after_sigkill(tmp_path, KILLED_AT_START_UP, "imported")
    assert not leaked, f"left in /dev/shm by the job killed at start-up: {sorted(map(str, leaked))}"


def test_only_the_mpi_librarys_segments_are_named_for_removal():
    from hpcsgd.exits import mpi_segments
    maps = ("7f00-7f01 rw-s 0 00:1a 5 /dev/shm/mpich_shm_2a21_0\n"
            "7f02-7f03 r--s 0 00:1a 6 /dev/shm/hpcsgd/train/data.mdb\n"  # a staged LMDB
            "7f04-7f05 r-xp 0 08:01 7 /usr/lib/libmpi.so.12\n")
    assert mpi_segments(maps) == {"/dev/shm/mpich_shm_2a21_0"}
