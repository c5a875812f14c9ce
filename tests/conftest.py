import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

import os  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

SHM = Path("/dev/shm")


def _mapped_shm() -> set[str]:
    """Paths under /dev/shm that some live process has mapped."""
    paths = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:  # the process ended, or is not ours to read
            continue
        paths.update(w for w in text.split() if w.startswith("/dev/shm/"))
    return paths


@pytest.fixture(scope="session", autouse=True)
def remove_leftover_mpich_segments():
    """Several tests kill or abort MPI jobs on purpose (watchdog, SIGKILL, NaN stop, Slurm
    requeue). MPICH unlinks its node segment in MPI_Finalize, which such a job never reaches,
    so each leaves 4 MB of RAM in /dev/shm. Remove those the session created, once no process
    maps them (looked at twice, 0.5 s apart: a job starting elsewhere maps its new segment
    within milliseconds)."""
    def ours():
        found = set()
        for f in SHM.glob("mpich_shm_*"):
            try:
                if f.stat().st_uid == os.getuid():  # another user's job: not ours to judge
                    found.add(f)
            except FileNotFoundError:
                pass
        return found

    before = ours()
    yield
    new = ours() - before
    if not new:
        return
    unmapped = {f for f in new if str(f) not in _mapped_shm()}
    time.sleep(0.5)
    for leftover in unmapped - {Path(m) for m in _mapped_shm()}:
        try:
            leftover.unlink(missing_ok=True)
        except PermissionError:
            pass
