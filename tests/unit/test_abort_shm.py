"""An aborted MPI job leaves no MPI shared-memory segment in /dev/shm: MPICH removes its
node segment in MPI_Finalize, which MPI_Abort never reaches (the fault soak measured 4 MiB
left by every stall abort, docs/reliability.md), so abort_job removes it first."""
import subprocess
import sys
import time
from pathlib import Path

from test_faults import MPIEXEC, pytestmark  # noqa: F401 (skip where mpiexec cannot run)

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


def _segments() -> set[Path]:
    return set(Path("/dev/shm").glob("mpich_shm_*"))


def _mapped() -> set[str]:
    paths = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            paths.update(w for w in maps.read_text().split() if w.startswith("/dev/shm/"))
        except OSError:
            continue
    return paths


def test_an_aborted_job_leaves_no_mpi_segment_behind(tmp_path):
    script = tmp_path / "abort.py"
    script.write_text(ABORTING_JOB)
    before = _segments()
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0
    time.sleep(0.5)  # another job starting now maps its new segment within milliseconds
    leaked = {p for p in _segments() - before if str(p) not in _mapped()}
    assert not leaked, f"left in /dev/shm by the aborted job: {sorted(map(str, leaked))}"


def test_only_the_mpi_librarys_segments_are_named_for_removal():
    from hpcsgd.exits import mpi_segments
    maps = ("7f00-7f01 rw-s 0 00:1a 5 /dev/shm/mpich_shm_2a21_0\n"
            "7f02-7f03 r--s 0 00:1a 6 /dev/shm/hpcsgd/train/data.mdb\n"  # a staged LMDB
            "7f04-7f05 r-xp 0 08:01 7 /usr/lib/libmpi.so.12\n")
    assert mpi_segments(maps) == {"/dev/shm/mpich_shm_2a21_0"}
