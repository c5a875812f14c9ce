"""An aborted MPI job leaves no MPI shared-memory segment in /dev/shm: MPICH removes its
node segment in MPI_Finalize, which MPI_Abort never reaches (the fault soak measured 4 MiB
left by every stall abort, docs/reliability.md), so abort_job removes it first."""
import subprocess
import sys

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


def test_only_the_mpi_librarys_segments_are_named_for_removal():
    from hpcsgd.exits import mpi_segments
    maps = ("7f00-7f01 rw-s 0 00:1a 5 /dev/shm/mpich_shm_2a21_0\n"
            "7f02-7f03 r--s 0 00:1a 6 /dev/shm/hpcsgd/train/data.mdb\n"  # a staged LMDB
            "7f04-7f05 r-xp 0 08:01 7 /usr/lib/libmpi.so.12\n")
    assert mpi_segments(maps) == {"/dev/shm/mpich_shm_2a21_0"}
