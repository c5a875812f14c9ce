import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

import os  # noqa: E402

import pytest  # noqa: E402

from hpcsgd.exits import leaked_mpi_segments, mpi_segment_files  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def remove_leftover_mpich_segments():
    """Several tests kill or abort MPI jobs on purpose (watchdog, SIGKILL, NaN stop, Slurm
    requeue). MPICH unlinks its node segment in MPI_Finalize, which such a job never reaches,
    so each leaves 4 MB of RAM in /dev/shm (abort_job removes its own; a killed job cannot).
    Remove those the session created that no process maps (hpcsgd.exits.leaked_mpi_segments)."""
    before = mpi_segment_files()
    yield
    for leftover in leaked_mpi_segments(before):
        try:
            if leftover.stat().st_uid == os.getuid():  # another user's job: not ours to judge
                leftover.unlink(missing_ok=True)
        except (FileNotFoundError, PermissionError):
            pass
