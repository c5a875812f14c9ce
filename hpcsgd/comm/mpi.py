"""The MPI backend: mpi4py's uppercase (buffer) calls on contiguous arrays, no pickling.

bf16 tensors travel as raw 16-bit words (alltoall, allgather, broadcast); MPI's built-in
reduction operators do not know bf16, so sums in bf16 go through hpcsgd.comm.wire instead.

Waiting politely: a rank blocked in an MPI collective busy-polls until its peers arrive
(MPICH's shared-memory and network progress both spin). On the communication thread that
spinning competes with the backward pass for the cores (and, on SMT siblings, for the same
physical core) for as long as the slowest rank is still computing. With `arrival_poll_s` > 0
each collective is preceded by a non-blocking barrier that the thread polls with sleeps in
between: it waits for the last rank without burning a core, then runs the collective with
everyone present, so that the busy phase is only the data movement itself.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from hpcsgd.mpi_start import MPI

from hpcsgd.comm.buckets import flat_view

_REDUCIBLE = {torch.float32, torch.float64, torch.int32, torch.int64}


def _buffer(t: torch.Tensor) -> np.ndarray:
    """A flat numpy array over t's memory (dense layouts only; bf16 as int16 words)."""
    if t.device.type != "cpu":
        raise ValueError(f"MPI collectives need a CPU tensor, got {t.device}")
    flat = flat_view(t)
    if flat.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    return flat.numpy()


class MPIBackend:
    name = "mpi"

    def __init__(self, world, *, dup: bool = False, arrival_poll_s: float = 0.0,
                 message_bytes: int = 0):
        """dup: use a private duplicate of world.comm (collective), so that collectives on
        the communication thread can never interleave with the main thread's.
        arrival_poll_s: > 0 waits for all ranks by sleeping polls of this period before each
        allreduce/alltoall (see the module doc); 0 = straight into the collective.
        message_bytes: > 0 splits an allreduce into Allreduce calls of at most this many
        bytes (MPICH on our test machine moves <= 16 MB messages twice as fast as >= 32 MB
        ones; docs/comm.md); 0 = one call."""
        self.comm = world.comm.Dup() if dup else world.comm
        self._owned = dup
        self.size = self.comm.size
        self.rank = self.comm.rank
        self.arrival_poll_s = arrival_poll_s
        self.message_bytes = message_bytes

    def wait_for_all(self) -> None:
        """Return once every rank has called it (a barrier that sleeps instead of spinning)."""
        if self.size > 1 and self.arrival_poll_s > 0:
            request = self.comm.Ibarrier()
            while not request.Test():
                time.sleep(self.arrival_poll_s)

    def allreduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype not in _REDUCIBLE:
            raise TypeError(f"MPI's built-in SUM cannot reduce {t.dtype} tensors "
                            "(bf16: use comm.wire_dtype = 'bfloat16', hpcsgd/comm/wire.py)")
        if self.size > 1:
            self.wait_for_all()
            buf = _buffer(t)
            step = max(1, self.message_bytes // buf.itemsize) if self.message_bytes else buf.size
            for lo in range(0, buf.size, step):
                self.comm.Allreduce(MPI.IN_PLACE, buf[lo:lo + step], op=MPI.SUM)
        return t

    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        if self.size > 1:
            self.comm.Bcast(_buffer(t), root=root)
        return t

    def alltoall_(self, send: torch.Tensor, recv: torch.Tensor) -> torch.Tensor:
        """recv[j-th chunk] = rank j's send[my chunk]; equal chunks of numel/size."""
        self.wait_for_all()
        self.comm.Alltoall(_buffer(send), _buffer(recv))
        return recv

    def allgather_(self, send: torch.Tensor, recv: torch.Tensor) -> torch.Tensor:
        """recv[j-th chunk] = rank j's send."""
        self.comm.Allgather(_buffer(send), _buffer(recv))
        return recv

    def close(self) -> None:
        if self._owned:
            self.comm.Free()
            self._owned = False
