"""How an hpcsgd process ends: the exit codes of every command, in one place (a batch script
branches on them: jobs/slurm/run.sh requeues on EXIT_REQUEUE), and `abort_job`, which ends
every rank of an MPI job with one of them. Imports no MPI: `abort_job` is handed the
communicator."""
from __future__ import annotations

import os
import time
from pathlib import Path

EXIT_DONE = 0
EXIT_REFUSED = 2
"""Refused before any work: a bad option or value, a missing file, an earlier run's folder,
a launcher/MPI mismatch. One line on stderr names what to change."""
EXIT_REQUEUE = 3
"""Stopped by SIGUSR1/SIGTERM at an agreed step after writing a checkpoint: requeue the job
with checkpoint.resume = "auto"."""
EXIT_STALL = 4
"""A collective unfinished after comm.stall_timeout_s, or ranks in different collectives; the
message names the collective and the ranks."""
EXIT_NONFINITE = 5
"""NaN/Inf in a step's loss or gradients (train.nonfinite = "stop", or too many skips)."""

MEANING = {EXIT_DONE: "done", EXIT_REFUSED: "refused before any work (bad option, missing "
           "data, an earlier run's folder)", EXIT_REQUEUE: "stopped by SIGUSR1/SIGTERM after "
           "a checkpoint (requeue with --checkpoint.resume=auto)", EXIT_STALL: "stall (the "
           "collective and the ranks named)", EXIT_NONFINITE: "NaN/Inf"}


OUTPUT_GRACE_S = 0.5
"""How long an aborting rank waits between writing its message and MPI_Abort."""


def abort_job(comm, code: int) -> None:
    """MPI_Abort on `comm`, after the launcher has had time to forward what this rank printed,
    and never returning.

    The launcher learns of the abort and of our output on different sockets and may tear the
    job down before it has read the output: Hydra lost the failing rank's whole message in
    about 1 of 10 runs of tests/unit/test_cli.py on this machine. And MPICH's MPI_Abort returns
    to the caller while the launcher kills the job (measured: Python ran on after it and
    printed a second, misleading traceback); this process ends here whatever happens.
    """
    time.sleep(OUTPUT_GRACE_S)
    remove_mpi_segments()
    try:
        comm.Abort(code)
    finally:
        os._exit(code)


MPI_SEGMENT_PREFIXES = ("/dev/shm/mpich_shm_",)
"""Shared-memory segments the MPI library makes at start and removes in MPI_Finalize (MPICH's
node segment, 4 MiB here), which an aborted job never reaches: every stall abort of the fault
soak left one in /dev/shm (docs/reliability.md). Only these names: a staged LMDB under
/dev/shm is mapped too and must stay."""


def mpi_segments(maps: str) -> set[str]:
    """The MPI library's segments among the paths of a /proc/<pid>/maps text."""
    return {w for w in maps.split() if w.startswith(MPI_SEGMENT_PREFIXES)}


def remove_mpi_segments() -> None:
    """Unlink the segments this process maps, before MPI_Abort: the ranks of this node keep
    their mappings until they die, and then the memory is freed instead of kept by a file.
    (Other nodes' segments are their aborting ranks' to remove; MPI_Abort kills them first.)"""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return
    for path in mpi_segments(maps):
        try:
            os.unlink(path)
        except OSError:  # already removed by another rank of this node, or not ours
            pass


def release_mpi_segments(node_comm) -> None:
    """Collective over a node's ranks, right after MPI_Init: once all of them have mapped the
    library's node segment, the first unlinks its name. The mappings stay valid until each
    rank exits, and MPICH's own unlink in MPI_Finalize finds the name gone and says nothing
    (MPICH 5.0.2: exit 0, no message); so no end of the job, not even a SIGKILL of every rank
    (the fault soak: 4 MiB left by every kill after start-up), leaves the segment's memory
    held by a file in /dev/shm. (MPICH's shared windows are unlinked by MPICH itself as soon
    as they are mapped.)"""
    node_comm.Barrier()  # every rank of the node is past MPI_Init: the segment is mapped
    if node_comm.rank == 0:
        remove_mpi_segments()


def mpi_segment_files() -> set[Path]:
    """The MPI library's segments present in /dev/shm, mapped or not."""
    return {f for prefix in MPI_SEGMENT_PREFIXES
            for f in Path(prefix).parent.glob(Path(prefix).name + "*")}


def leaked_mpi_segments(before: set[Path]) -> list[Path]:
    """MPI segments made since `before` (mpi_segment_files()) that no live process maps: what
    a killed or aborted job left behind (the fault soak's and the tests' leak check)."""
    new = mpi_segment_files() - before
    time.sleep(0.5)  # a job starting elsewhere maps its new segment within milliseconds
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            mapped.update(mpi_segments(maps.read_text()))
        except OSError:  # the process ended, or is not ours to read
            continue
    return sorted(f for f in new if str(f) not in mapped and f.exists())
