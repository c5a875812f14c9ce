"""The stall watchdog in-process, at any world size: the last rank never enters collective #1,
every other rank's collective stays "in flight"; the watchdog must name the last rank on every
rank (its report, or the abort notice it received). The job is not really aborted: the test
injects a recorder in place of MPI_Abort. tests/unit/test_comm_launch.py checks the real abort
under mpiexec -n 4."""
import io
import time

from mpi4py import MPI

from hpcsgd.comm.engine import Progress
from hpcsgd.comm.watchdog import Watchdog
from hpcsgd.exits import EXIT_STALL


def test_watchdog_names_the_rank_that_does_not_arrive(world):
    lagging = world.size - 1 if world.size > 1 else None
    progress = Progress()
    ended = []
    out = io.StringIO()
    world.comm.Barrier()
    wd = Watchdog(world.comm, progress, timeout_s=0.5, grace_s=3.0, period_s=0.05,
                  abort=lambda code, text: ended.append((code, text)), out=out)
    if world.rank != lagging:
        progress.enter("test collective")  # this rank waits in collective #1
    deadline = time.monotonic() + 20
    while not ended and time.monotonic() < deadline:
        time.sleep(0.05)
    wd.close()  # collective: every rank has ended by now
    assert ended, f"rank {world.rank}: the watchdog did not fire"
    code, text = ended[0]
    assert code == EXIT_STALL
    expected = f"[{lagging}]" if lagging is not None else "[]"
    assert f"not arrived: {expected}" in text, text
    if "has not completed" in text:  # the reporting rank: its full report was printed
        assert text in out.getvalue()
        assert "collective #1 (test collective)" in text
        if lagging is not None:
            assert f"rank {lagging}: last collective entered #0" in text
    # close() drained the side channel: a communicator created next (MPICH hands out the
    # freed context id again) sees no stale query, reply or abort notice
    fresh = world.comm.Dup()
    try:
        time.sleep(0.2)
        assert not fresh.iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG), \
            f"rank {world.rank}: a watchdog message outlived close()"
        assert fresh.allreduce(1) == world.size
    finally:
        fresh.Free()
