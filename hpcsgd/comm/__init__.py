"""Collective communication: backends behind one interface, and the gradient reducer.

A backend sums contiguous float tensors in place across the ranks of a world and broadcasts
from a root. ``mpi`` (mpi4py's buffer API) is the default and the one always present; gloo
and oneCCL plug in here by adding a constructor to BACKENDS.
"""
from __future__ import annotations

from hpcsgd.comm.mpi import MPIBackend

BACKENDS = {"mpi": MPIBackend}


def build_backend(name: str, world):
    if name not in BACKENDS:
        raise ValueError(f"comm.backend = {name!r}: unknown (available: {', '.join(BACKENDS)})")
    return BACKENDS[name](world)


def build_reducer(model, cfg, world):
    """The gradient reducer for `model` as configured in the [comm] section `cfg`."""
    from hpcsgd.comm.reducer import BlockingReducer
    return BlockingReducer(model, build_backend(cfg.backend, world), world_size=world.size,
                           bucket_mb=cfg.bucket_mb)
