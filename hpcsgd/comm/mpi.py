"""The MPI backend: mpi4py's uppercase (buffer) calls on contiguous arrays, no pickling.

bf16 tensors travel as raw 16-bit words (alltoall, allgather, broadcast); MPI's built-in
reduction operators do not know bf16, so sums in bf16 go through hpcsgd.comm.wire instead.
"""
from __future__ import annotations

import numpy as np
import torch
from mpi4py import MPI

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

    def __init__(self, world, *, dup: bool = False):
        """dup: use a private duplicate of world.comm (collective), so that collectives on
        the communication thread can never interleave with the main thread's."""
        self.comm = world.comm.Dup() if dup else world.comm
        self._owned = dup
        self.size = self.comm.size
        self.rank = self.comm.rank

    def allreduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype not in _REDUCIBLE:
            raise TypeError(f"MPI's built-in SUM cannot reduce {t.dtype} tensors "
                            "(bf16: use comm.wire_dtype = 'bfloat16', hpcsgd/comm/wire.py)")
        if self.size > 1:
            self.comm.Allreduce(MPI.IN_PLACE, _buffer(t), op=MPI.SUM)
        return t

    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        if self.size > 1:
            self.comm.Bcast(_buffer(t), root=root)
        return t

    def alltoall_(self, send: torch.Tensor, recv: torch.Tensor) -> torch.Tensor:
        """recv[j-th chunk] = rank j's send[my chunk]; equal chunks of numel/size."""
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
