"""MPI for the whole package, started once: every hpcsgd module takes `MPI` from here, so
whichever of them is imported first starts MPI the same way.

- Thread level: the communication thread and the stall watchdog (hpcsgd/comm) call MPI while
  the main thread may too, so MPI_THREAD_MULTIPLE is asked for before MPI_Init (no effect if
  something imported mpi4py.MPI earlier; hpcsgd.comm.build_reducer checks what was granted).
- The node segment: as soon as MPI has started, the ranks of each node wait for each other
  (each has then mapped the library's node segment) and the node's first rank unlinks its
  name (hpcsgd.exits.release_mpi_segments), so a job killed at any moment after this leaves
  no 4 MiB file in /dev/shm. Done here, not in init_world: that comes after the rest of the
  imports and the input checks, and a SIGKILL in those ~2 s left the segment (the fault
  soak, docs/reliability.md). It is a collective at import time, which holds because every
  rank of a job runs the same program; a process outside mpiexec is a 1-rank world.
"""
from __future__ import annotations

import mpi4py

mpi4py.rc.thread_level = "multiple"
from mpi4py import MPI  # noqa: E402

from hpcsgd.exits import release_mpi_segments  # noqa: E402


def _release_node_segment() -> None:
    world = MPI.COMM_WORLD
    node = world.Split_type(MPI.COMM_TYPE_SHARED, key=world.rank)
    try:
        release_mpi_segments(node)
    finally:
        node.Free()


_release_node_segment()

__all__ = ["MPI"]
