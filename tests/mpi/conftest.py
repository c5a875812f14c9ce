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

from hpcsgd.run.world import init_world

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


_SHARED_TMPS: list[Path] = []


@pytest.fixture
def shared_tmp(world):
    """One temporary folder for all ranks (same node), made by rank 0; all of them are removed
    at the end of the session, not after each test: a test's LMDB environments may still be
    open in this process, and py-lmdb refuses a new folder whose files reuse a deleted one's
    inode numbers ("already open in this process")."""
    path = tempfile.mkdtemp(prefix="hpcsgd-test-") if world.rank == 0 else None
    path = Path(world.comm.bcast(path))
    _SHARED_TMPS.append(path)
    yield path
    world.comm.Barrier()


def pytest_sessionfinish(session, exitstatus):
    COMM.Barrier()  # every rank is done with the folders
    if COMM.rank == 0:
        for path in _SHARED_TMPS:
            shutil.rmtree(path, ignore_errors=True)

