"""Stopping on request: SIGUSR1 / SIGTERM make every rank stop at the same step boundary.

A signal may reach one rank, some or all (Slurm's ``--signal``, ``scancel --signal``, or
mpiexec forwarding). The handler only records it; at each step boundary the ranks agree with
one small allreduce (MAX of the signal numbers), so all of them checkpoint the same step and
exit with EXIT_REQUEUE, which a batch script turns into ``scontrol requeue``.
"""
from __future__ import annotations

import signal

from mpi4py import MPI

EXIT_REQUEUE = 3
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class StopRequest:
    def __init__(self, signals=STOP_SIGNALS):
        self.signum = 0
        self._previous = {s: signal.signal(s, self._record) for s in signals}

    def _record(self, signum, _frame) -> None:
        self.signum = signum

    def agreed(self, comm: MPI.Comm) -> int:
        """Collective: the signal any rank received (0 = none). Costs one 4-byte allreduce."""
        return comm.allreduce(self.signum, op=MPI.MAX)

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
