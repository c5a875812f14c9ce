"""MPI tests run both under plain pytest (a 1-rank world) and under `mpiexec -n 4 pytest`.

Every assertion holds at any world size. A failure on one rank aborts the whole job at once
(after printing the report), so the other ranks never wait forever in a collective.
"""
import os
import sys
import tempfile
from pathlib import Path

import pytest
from mpi4py import MPI

from hpcsgd.world import init_world

COMM = MPI.COMM_WORLD


def pytest_runtest_logreport(report):
    if report.failed and COMM.size > 1:
        sys.stderr.write(f"\n[rank {COMM.rank}] FAILED {report.nodeid}\n{report.longreprtext}\n")
        sys.stderr.flush()
        COMM.Abort(1)


@pytest.fixture(scope="session")
def world():
    return init_world(COMM)


@pytest.fixture
def shared_tmp(world):
    """One temporary folder for all ranks (same node), made by rank 0."""
    path = tempfile.mkdtemp(prefix="hpcsgd-test-") if world.rank == 0 else None
    path = Path(world.comm.bcast(path))
    yield path
    world.comm.Barrier()

