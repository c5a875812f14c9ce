"""MPI tests run both under plain pytest (a 1-rank world) and under `mpiexec -n 4 pytest`.

Every assertion holds at any world size. A failure on one rank aborts the whole job at once
(after printing the report), so the other ranks never wait forever in a collective.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from mpi4py import MPI

from hpcsgd.world import init_world

COMM = MPI.COMM_WORLD



@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    if COMM.size > 1 and COMM.rank != 0:
        # one progress report, rank 0's: the other ranks print none (their failures still
        # reach stderr below, and abort the job)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)


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
    """One temporary folder for all ranks (same node), made by rank 0 and removed by it once
    every rank is done with it."""
    path = tempfile.mkdtemp(prefix="hpcsgd-test-") if world.rank == 0 else None
    path = Path(world.comm.bcast(path))
    yield path
    world.comm.Barrier()
    if world.rank == 0:
        shutil.rmtree(path, ignore_errors=True)

