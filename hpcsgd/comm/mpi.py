"""The MPI backend: mpi4py's uppercase (buffer) calls on contiguous arrays, no pickling."""
from __future__ import annotations

import numpy as np
import torch
from mpi4py import MPI


def _buffer(t: torch.Tensor) -> np.ndarray:
    """A flat array over t's memory. Dense layouts (contiguous or channels_last) are sent as
    raw memory: every rank holds the same layout, so elements line up."""
    if t.device.type != "cpu":
        raise ValueError(f"MPI collectives need a CPU tensor, got {t.device}")
    if t.is_contiguous():
        return t.view(-1).numpy()
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.as_strided(t, (t.numel(),), (1,), t.storage_offset()).numpy()
    raise ValueError(f"MPI collectives need a dense tensor, got strides {t.stride()}")


class MPIBackend:
    name = "mpi"

    def __init__(self, world):
        self.comm = world.comm
        self.size = world.size

    def allreduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.size > 1:
            self.comm.Allreduce(MPI.IN_PLACE, _buffer(t), op=MPI.SUM)
        return t

    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        if self.size > 1:
            self.comm.Bcast(_buffer(t), root=root)
        return t
