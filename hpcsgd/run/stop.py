"""Stopping on request: SIGUSR1 / SIGTERM make every rank stop at the same step boundary.

A signal may reach one rank, some or all (Slurm's ``--signal``, ``scancel --signal``, or
mpiexec forwarding). The handler only records it; every step the ranks agree on it in the
step's control collective (hpcsgd/run/control.py: the highest signal number), so all of them
checkpoint the same step and exit with EXIT_REQUEUE, which a batch script turns into
``scontrol requeue``.
"""
from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class StopRequest:
    def __init__(self, signals=STOP_SIGNALS):
        self.signum = 0
        self._previous = {s: signal.signal(s, self._record) for s in signals}

    def _record(self, signum, _frame) -> None:
        self.signum = signum

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
