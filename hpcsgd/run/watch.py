"""Every collective of the main thread, watched: none waits for ever.

A rank that skips a collective (a bug, a rank-local decision) or stops before it (stuck, or
dead under a launcher that does not tear the job down) leaves the others inside that
collective; a blocking MPI call cannot be interrupted, and a SIGTERM is never acted on when no
step boundary comes. So the main thread makes its collectives non-blocking and waits for them
here (``Watch.wait``), politely (tests with sleeps in between, so that a rank that arrives
early gives its core to the ranks still computing) and never past comm.stall_timeout_s:

- every wait is recorded in the watch's ``Progress`` (sequence number, label, since when), as
  the communication thread's jobs are; the stall watchdog (hpcsgd/comm/watchdog.py) started
  by ``start()`` polls it, and when a wait outlives the limit asks every rank where it is,
  prints which ranks have not arrived, and ends the job with exit 4 (EXIT_STALL);
- without a watchdog (one rank, no MPI_THREAD_MULTIPLE) the waiting rank itself ends the job
  at the limit, naming the collective (the ranks it cannot name).

The step's own collectives (the control allreduce, the log allgather) are non-blocking calls
waited for here. The others (evaluation, buffer averaging, checkpoints, resume, the run's
last barrier) keep their MPI calls and rounding as they were (a non-blocking allreduce need
not share the blocking one's algorithm, so a float sum could change in its last bits) behind
a ``gate()``: a small non-blocking allreduce of the collective's label, on the watch's own
communicator, that every rank must reach, watched like any other wait. After it every rank is
present and has named the same collective, so the call that follows cannot stall (a rank
that dies in it is the launcher's to clean up). Gates match only gates: a rank that skips a
gated collective meets the others at its next gate, and the ranks at each label are named
(exit 4); if it went on into a step collective instead, both wait, and the watchdog names
where each rank is.

The run's set-up collectives (core plan, node count, staging the LMDBs, backend, rank 0's
weights, reducer, resume) are gated or waited for here too, under comm.setup_timeout_s: longer,
because a node's ranks wait for its first rank to copy the data set into RAM.

The watch belongs to the World (hpcsgd/run/world.py), so every function that is handed the
world reaches it; a trainer calls ``start()`` with the set-up limit first, then with
comm.stall_timeout_s and the communication cores once its core plan exists.
"""
from __future__ import annotations

import sys
import time
import zlib

import numpy as np
from hpcsgd.mpi_start import MPI

from hpcsgd.exits import EXIT_STALL, abort_job

POLL_S = 100e-6
"""Sleep between tests of a pending collective."""


class Watch:
    """The main thread's waits for collectives on `comm`, limited to `timeout_s` seconds
    (0 = no limit)."""

    def __init__(self, comm: MPI.Comm, timeout_s: float = 0.0):
        from hpcsgd.comm.engine import Progress  # here: importing hpcsgd.comm imports torch
        self.comm, self.timeout_s = comm, timeout_s
        # the gates' own communicator (collective): a gate never matches another collective
        self.gates = comm.Dup() if comm.size > 1 else comm
        self.progress = Progress()
        self.watchdog = None
        self.cores: list[int] | None = None

    def start(self, timeout_s: float, cores: list[int] | None = None) -> None:
        """Limit every later wait to timeout_s (comm.stall_timeout_s) and run the stall
        watchdog on this watch's progress (on `cores`, the communication cores). Collective:
        every rank calls it with the same limit; calling it again changes the limit (a
        trainer starts with comm.setup_timeout_s before its core plan exists, then sets
        comm.stall_timeout_s and the plan's cores)."""
        from hpcsgd.comm.watchdog import Watchdog
        self.timeout_s = timeout_s
        wanted = timeout_s > 0 and self.comm.size > 1 \
            and MPI.Query_thread() >= MPI.THREAD_MULTIPLE
        if self.watchdog is not None and wanted and cores == self.cores:
            self.watchdog.timeout_s = timeout_s
            return
        self.cores = cores
        if self.watchdog is not None:
            self.watchdog.close()  # collective: drains and frees its side channel
            self.watchdog = None
        if wanted:
            self.watchdog = Watchdog(self.comm, self.progress, timeout_s=timeout_s,
                                     cores=cores)

    def wait(self, request: MPI.Request, what: str) -> None:
        """Wait for `request`, the non-blocking collective `what` (a label that names it
        and the step, the same on every rank)."""
        self.progress.enter(what)
        try:
            limit = self.timeout_s
            if limit and self.watchdog is not None:
                # the watchdog reports first (it names the ranks); this is its fallback
                limit += 2 * self.watchdog.grace_s + 2.0
            deadline = time.monotonic() + limit if limit else float("inf")
            while not request.Test():
                if time.monotonic() > deadline:
                    self._stalled(what)
                time.sleep(POLL_S)
        finally:
            self.progress.leave()

    def barrier(self, what: str) -> None:
        """A watched barrier (sync point): a gate is one."""
        self.gate(what)

    def gate(self, what: str) -> None:
        """Return once every rank has reached the gate of the same collective `what`
        (watched); see the module doc. Ends the job (exit 4) when ranks reached the gates of
        different collectives, after naming them."""
        if self.comm.size == 1:
            return
        h = zlib.crc32(what.encode())
        # MIN of (h, -h) is (lowest, -highest): equal on every rank iff all labels are equal
        ends = np.array([h, -h], np.int64)
        self.wait(self.gates.Iallreduce(MPI.IN_PLACE, ends, op=MPI.MIN), what)
        if ends[0] != -ends[1]:
            # every rank saw the disagreement and is here: name each rank's collective
            self._disagree(self.gates.allgather(what))

    def _disagree(self, labels: list[str]) -> None:
        if self.comm.rank == 0:
            groups: dict[str, list[int]] = {}
            for r, label in enumerate(labels):
                groups.setdefault(label, []).append(r)
            detail = "; ".join(f"ranks {ranks}: {label}" for label, ranks in groups.items())
            sys.stderr.write(f"[hpcsgd] ranks reached different collectives ({detail}): a "
                             f"rank skipped one; ending all {self.comm.size} ranks with exit "
                             f"{EXIT_STALL}\n")
            sys.stderr.flush()
        abort_job(self.comm, EXIT_STALL)

    def _stalled(self, what: str) -> None:
        who = "" if self.watchdog is None else " (the watchdog did not report)"
        sys.stderr.write(f"[hpcsgd] rank {self.comm.rank}: {what} unfinished after "
                         f"{self.timeout_s:g} s (comm.stall_timeout_s){who}: another rank "
                         f"never reached it or died; ending all {self.comm.size} ranks with "
                         f"exit {EXIT_STALL}\n")
        sys.stderr.flush()
        abort_job(self.comm, EXIT_STALL)
