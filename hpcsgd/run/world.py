"""The MPI world of one rank: global rank/size, the node communicator, and fail-fast abort.

Launched by mpiexec/mpirun/srun the same code sees N ranks; run as plain ``python`` it is a
1-rank world (MPI's singleton init). The world is passed explicitly to whatever needs it.
"""
from __future__ import annotations

import os
import socket
import sys
import traceback
from dataclasses import dataclass, field

from hpcsgd.exits import abort_job
from hpcsgd.mpi_start import MPI  # MPI_THREAD_MULTIPLE; the node segment released at start
from hpcsgd.run.watch import Watch


@dataclass
class World:
    comm: MPI.Comm
    """All ranks of the job."""
    node_comm: MPI.Comm
    """Ranks that share this node's memory (MPI_COMM_TYPE_SHARED)."""
    rank: int
    size: int
    local_rank: int
    local_size: int
    hostname: str
    watch: Watch = field(default=None, repr=False)
    """Waits for the main thread's collectives on `comm`, none for ever (hpcsgd/run/watch.py);
    unlimited until a trainer calls watch.start(comm.stall_timeout_s)."""

    def __post_init__(self):
        if self.watch is None:
            self.watch = Watch(self.comm)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def num_nodes(self) -> int:
        # every node's local rank 0 counts itself once
        self.watch.gate("counting the nodes")
        return self.comm.allreduce(1 if self.local_rank == 0 else 0)

    def abort(self, message: str, code: int = 1) -> None:
        """End every rank of the job now; a stuck or failed rank must never leave others hanging."""
        sys.stderr.write(f"[hpcsgd] rank {self.rank} ({self.hostname}): {message}\n")
        sys.stderr.flush()
        abort_job(self.comm, code)


class Refused(RuntimeError):
    """Raised on every rank together when any rank's input check failed (see agree)."""


def agree(world: "World", fn, *errors: type[BaseException], what: str = "an input check"):
    """Run fn on every rank; if it raises one of `errors` on any rank, raise Refused with that
    rank's message on all ranks (no rank goes on alone into a collective). Collective (its
    allgather behind the watch's gate, labelled `what`)."""
    result, message = None, None
    try:
        result = fn()
    except errors as e:
        message = str(e)
    world.watch.gate(f"the agreement after {what}")
    messages = world.comm.allgather(message)
    failed = [r for r, m in enumerate(messages) if m is not None]
    if failed:
        who = "all ranks" if len(failed) == world.size else f"ranks {failed}"
        raise Refused(f"{messages[failed[0]]} ({who})")
    return result


def init_world(comm: MPI.Comm | None = None) -> World:
    comm = comm if comm is not None else MPI.COMM_WORLD
    provided = MPI.Query_thread()
    # hpcsgd.comm.build_reducer refuses to start its threads below MPI_THREAD_MULTIPLE
    if provided < MPI.THREAD_SERIALIZED:
        raise RuntimeError(f"MPI granted thread level {provided}; hpcsgd needs at least "
                           "MPI_THREAD_SERIALIZED (set mpi4py.rc.thread_level)")
    node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    return World(comm=comm, node_comm=node_comm, rank=comm.rank, size=comm.size,
                 local_rank=node_comm.rank, local_size=node_comm.size,
                 hostname=socket.gethostname())


def expected_world_size() -> int | None:
    """The launcher's intended size, when it tells us (to catch a foreign mpiexec that starts
    N singleton jobs instead of one N-rank job)."""
    for var in ("HPCSGD_EXPECT_WORLD", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
                "SLURM_STEP_NUM_TASKS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return None


def run_or_abort(world: World, fn, *args, **kwargs):
    """Run fn; any exception on any rank prints its traceback naming the rank and aborts the job."""
    try:
        return fn(*args, **kwargs)
    except (SystemExit, Refused):
        raise
    except BaseException as e:  # noqa: BLE001 - every failure must end all ranks
        traceback.print_exc()
        if world.size == 1:
            raise
        world.abort(f"failed with {type(e).__name__}: {e}; aborting all {world.size} ranks")
