"""A barrier for the ranks of one node that waits asleep in the kernel.

The hierarchical allreduce separates its phases with node barriers, several per gradient
bucket. MPI_Barrier busy-polls; a poll loop with short sleeps (the first version) cost the
communication thread 25-35 ms of CPU per ResNet-50 step on a 2-core node running 4 ranks,
nearly all of it waking up to look at flags while the slowest rank was still in its backward
pass, and every wake-up took a core from a compute thread. Here the ranks that arrive early
sleep on a Linux futex, a 32-bit word of the node's shared memory, and the last rank to arrive
wakes them all with one system call: no CPU is spent while waiting, and the release follows
the last arrival within a wake-up latency.

The protocol, for barrier number e:
  1. each rank writes e into its own flag (one int64 per rank, written by its rank only, so no
     atomic read-modify-write is needed), then a full memory barrier (MPI_Win_sync), so that
     two ranks arriving together cannot both miss each other's flag (store-load ordering);
  2. a rank that sees every flag at e is last: it writes e into the release word and wakes
     the sleepers; any other rank sleeps on the release word while it still holds the value
     read before the flags were checked (a release written in between makes the sleep return
     at once: the futex checks the word and sleeps atomically).
Sleeps have a timeout (RECHECK_S) after which the flags are read again, so a wake-up lost to
any race costs latency, never a hang. Where the futex system call is not available (not
Linux, unknown architecture, or the call fails) the waiting ranks poll the flags with sleeps
of poll_s.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
import time

import numpy as np
from hpcsgd.mpi_start import MPI

RECHECK_S = 0.02
"""Longest sleep before the flags are read again (only a lost wake-up ever waits this long)."""

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "arm64": 98, "ppc64le": 221, "ppc64": 221,
              "riscv64": 98, "s390x": 238}
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1  # not FUTEX_PRIVATE_FLAG: the word is shared between processes
_WAKE_ALL = 2**31 - 1
_WAIT_OUTCOMES = (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR)  # word changed, timeout, signal


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Futex:
    """futex(2) wait and wake on a 32-bit word given by address (ctypes releases the GIL
    for the call, so the other threads of the rank run while this one sleeps)."""

    def __init__(self):
        number = _SYS_FUTEX.get(platform.machine())
        # platform.machine() is the kernel's architecture: a 32-bit Python on a 64-bit kernel
        # would need the 32-bit numbers
        if number is None or not sys.platform.startswith("linux") or \
                ctypes.sizeof(ctypes.c_void_p) != 8:
            raise OSError(f"no futex system call known for {sys.platform} {platform.machine()}")
        self._number = ctypes.c_long(number)
        self._syscall = ctypes.CDLL(None, use_errno=True).syscall
        self._syscall.restype = ctypes.c_long

    def wait(self, address: int, expected: int, timeout_s: float) -> None:
        """Sleep while the word at `address` equals `expected`, until woken or timed out.
        Raises OSError when the call itself fails (not allowed, not implemented)."""
        whole = int(timeout_s)
        ts = _Timespec(whole, int((timeout_s - whole) * 1e9))
        if self._syscall(self._number, ctypes.c_void_p(address), ctypes.c_int(_FUTEX_WAIT),
                         ctypes.c_int(expected), ctypes.byref(ts), None, ctypes.c_int(0)) != 0:
            err = ctypes.get_errno()
            if err not in _WAIT_OUTCOMES:
                raise OSError(err, f"futex wait: {os.strerror(err)}")

    def wake(self, address: int) -> int:
        """Wake every sleeper on the word at `address`; returns how many were asleep."""
        woken = int(self._syscall(self._number, ctypes.c_void_p(address),
                                  ctypes.c_int(_FUTEX_WAKE), ctypes.c_int(_WAKE_ALL), None,
                                  None, ctypes.c_int(0)))
        if woken < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"futex wake: {os.strerror(err)}")
        return woken


def _futex_or_none() -> Futex | None:
    try:
        return Futex()
    except (OSError, AttributeError):
        return None


class NodeBarrier:
    """Barrier over `node` (the ranks of one shared-memory node; collective to build).
    poll_s > 0: wait asleep (futex, else polls every poll_s); poll_s = 0: MPI_Barrier."""

    def __init__(self, node: MPI.Comm, poll_s: float):
        self.node, self.poll_s = node, poll_s
        self.rank = node.rank
        # rank 0's part holds its flag and the release word (int32, futex-aligned at 8)
        self.win = MPI.Win.Allocate_shared(16 if node.rank == 0 else 8, 8, comm=node)
        self.win.Lock_all()  # passive epoch for the lifetime of the window
        self.flags = [np.frombuffer(self.win.Shared_query(r)[0], dtype=np.int64, count=1)
                      for r in range(node.size)]
        self.release = np.frombuffer(self.win.Shared_query(0)[0], dtype=np.int32, count=1,
                                     offset=8)
        self.flags[self.rank][0] = 0
        if self.rank == 0:
            self.release[0] = 0
        self.futex = _futex_or_none() if poll_s > 0 else None
        self.epoch = 0
        self.woken = 0
        """Sleepers this rank has woken as the last to arrive (for tests and diagnostics)."""
        node.Barrier()  # every flag and the release word initialised

    def wait(self) -> None:
        if self.poll_s <= 0:
            self.node.Barrier()
            return
        self.epoch += 1
        epoch, word = self.epoch, self.epoch & 0x7FFFFFFF
        self.flags[self.rank][0] = epoch
        self.win.Sync()  # full memory barrier: this flag is visible before the others are read
        address = self.release.ctypes.data
        while True:
            seen = int(self.release[0])
            if seen == word:  # released by the last rank
                return
            if all(f[0] >= epoch for f in self.flags):  # this rank is the last to arrive
                self.release[0] = word
                self.win.Sync()
                if self.futex is not None:
                    try:
                        self.woken += self.futex.wake(address)
                    except OSError:  # the sleepers re-check within RECHECK_S
                        self.futex = None
                return
            if self.futex is not None:
                try:
                    self.futex.wait(address, seen, RECHECK_S)
                    continue
                except OSError:  # e.g. forbidden by a seccomp filter: poll from now on
                    self.futex = None
            time.sleep(self.poll_s)

    def sync(self) -> None:
        """MPI_Win_sync on the barrier's window (part of the caller's memory fences)."""
        self.win.Sync()

    def free(self) -> None:
        self.win.Unlock_all()
        self.win.Free()
