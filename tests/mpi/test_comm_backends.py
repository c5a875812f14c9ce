"""The backends and allreduce variants at any world size: mpi and gloo sums and broadcasts,
the bf16 wire over both, the hierarchical allreduce with several ranks per "node" (the world
split into nodes of two ranks, so that the leaders' inter-node step runs even on one
machine), and waiting for a late rank without spinning."""
import time

import numpy as np

import pytest
import torch
from mpi4py import MPI

from hpcsgd.comm import build_backend
from hpcsgd.comm.hierarchical import HierarchicalAllreduce
from hpcsgd.comm.mpi import MPIBackend
from hpcsgd.comm.wire import BF16Wire, bf16_sum_error_bound


def _rank_values(world, n=1001):
    """Every rank's contribution (all ranks can compute all of them) and their exact sum."""
    xs = [torch.randn(n, generator=torch.Generator().manual_seed(r)) * 4.0 ** (r % 3)
          for r in range(world.size)]
    return xs, sum(x.double() for x in xs), sum(x.abs().double() for x in xs)


@pytest.mark.parametrize("name", ["mpi", "gloo"])
def test_backend_sums_and_broadcasts(world, name):
    backend = build_backend(name, world, private=True)
    xs, exact, abs_sum = _rank_values(world)
    t = xs[world.rank].clone()
    backend.allreduce_sum_(t)
    assert torch.all((t.double() - exact).abs() <= world.size * 2.0 ** -24 * abs_sum)
    b = torch.full((7,), float(world.rank)).bfloat16()  # raw 16-bit words travel too
    backend.broadcast_(b, root=world.size - 1)
    assert torch.all(b == world.size - 1)
    backend.close()


@pytest.mark.parametrize("name", ["mpi", "gloo"])
def test_bf16_wire_sum_is_within_its_bound_and_identical_on_every_rank(world, name):
    backend = build_backend(name, world, private=True)
    xs, exact, abs_sum = _rank_values(world)
    t = xs[world.rank].clone()
    BF16Wire(backend).allreduce_sum_(t)
    assert torch.all((t.double() - exact).abs() <= bf16_sum_error_bound(abs_sum, world.size))
    everyone = world.comm.allgather(t.numpy().tobytes())
    assert all(e == everyone[0] for e in everyone)
    backend.close()


@pytest.mark.parametrize("wire", ["float32", "bfloat16"])
def test_hierarchical_allreduce_over_nodes_of_two_ranks(world, wire):
    node = world.comm.Split(world.rank // 2, key=world.rank)  # "nodes" {0,1}, {2,3}, ...

    def inter(leaders):
        backend = MPIBackend(leaders, arrival_poll_s=1e-4)
        return BF16Wire(backend) if wire == "bfloat16" else backend

    h = HierarchicalAllreduce(world.comm, node, inter, capacity=10, arrival_poll_s=1e-4)
    xs, exact, abs_sum = _rank_values(world)
    for _ in range(2):  # the second call reuses the window; the first grows it past capacity
        t = xs[world.rank].clone()
        h.allreduce_sum_(t)
        nodes = (world.size + 1) // 2
        bound = world.size * 2.0 ** -24 * abs_sum if wire == "float32" else \
            bf16_sum_error_bound(abs_sum, nodes) * (1 + 2.0 ** -20)
        assert torch.all((t.double() - exact).abs() <= bound)
    assert h.capacity == 1001
    everyone = world.comm.allgather(t.numpy().tobytes())
    assert all(e == everyone[0] for e in everyone)  # node-local broadcast: same bits everywhere
    h.close()
    node.Free()


def test_waiting_for_a_late_rank_sleeps_instead_of_spinning(world):
    backend = MPIBackend(world, dup=True, arrival_poll_s=2e-4)
    late = world.size - 1
    t = torch.ones(16)
    world.comm.Barrier()
    if world.rank == late:
        time.sleep(1.0)
    wall, cpu = time.perf_counter(), time.thread_time()
    backend.allreduce_sum_(t)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    assert torch.all(t == world.size)
    if world.rank != late:  # waited about a second for the late rank, nearly without CPU
        assert wall > 0.5 and cpu < 0.25 * wall, (wall, cpu)
    backend.close()


def test_mpi_allreduce_in_small_messages_is_the_same_sum(world):
    xs, exact, abs_sum = _rank_values(world)
    t = xs[world.rank].clone()
    MPIBackend(world, message_bytes=100).allreduce_sum_(t)  # 11 messages of 25 floats
    assert torch.all((t.double() - exact).abs() <= world.size * 2.0 ** -24 * abs_sum)


def test_mpi_refuses_to_sum_bf16_with_its_builtin_operator(world):
    with pytest.raises(TypeError, match="cannot reduce torch.bfloat16"):
        MPIBackend(world).allreduce_sum_(torch.ones(4, dtype=torch.bfloat16))
    assert MPI.Query_thread() == MPI.THREAD_MULTIPLE  # what hpcsgd.run.world asked for


def _wait_behind_a_late_rank(wait, comm, delay: float) -> tuple[bool, float, float]:
    """Call wait() on every rank of comm, the last rank `delay` seconds late: (this rank is
    the late one, wall seconds, CPU seconds of this thread) spent in it."""
    late = comm.rank == comm.size - 1
    wall, cpu = time.perf_counter(), time.thread_time()
    if late:
        time.sleep(delay)
    wait()
    return late, time.perf_counter() - wall, time.thread_time() - cpu


def test_node_barrier_sleeps_until_the_last_rank_wakes_it(world):
    """The hierarchical allreduce's node barrier: ranks that arrive early sleep on the futex
    (almost no CPU) and the last one wakes them; over many rounds nobody passes early."""
    from hpcsgd.comm.nodebarrier import NodeBarrier
    node = world.comm.Split_type(MPI.COMM_TYPE_SHARED, key=world.rank)
    barrier = NodeBarrier(node, poll_s=2e-4)
    assert barrier.futex is not None  # Linux on a known architecture: the futex path
    late, wall, cpu = _wait_behind_a_late_rank(barrier.wait, node, 1.0)
    woken = node.allreduce(barrier.woken)
    if not late:  # waited about a second, asleep
        assert wall > 0.5 and cpu < 0.05 * wall, (wall, cpu)
    if node.size > 1:  # the late rank woke the sleepers (at most all of the others)
        assert 1 <= woken <= node.size - 1
    # nobody leaves round k before everyone has entered it: each rank marks its arrival in
    # its own row of a shared table, and after the barrier every row must show round k
    win = MPI.Win.Allocate_shared(8 * 50, 8, comm=node)
    win.Lock_all()
    rows = [np.frombuffer(win.Shared_query(r)[0], dtype=np.int64, count=50)
            for r in range(node.size)]
    rows[node.rank][:] = 0
    node.Barrier()
    for k in range(50):
        if (k + node.rank) % 3 == 0:
            time.sleep(0.002)  # a different late rank every round
        rows[node.rank][k] = 1
        win.Sync()
        barrier.wait()
        win.Sync()
        arrived = sum(int(row[k]) for row in rows)
        assert arrived == node.size, f"round {k}: left with {arrived} of {node.size} in"
    node.Barrier()
    win.Unlock_all()
    win.Free()
    barrier.free()
    node.Free()


def test_node_barrier_falls_back_to_sleeping_polls_when_the_futex_call_fails(world):
    """A futex call the kernel refuses (here a real ENOSYS: a system call number that does
    not exist, as a seccomp filter would answer) must not turn the wait into a spin."""
    import ctypes

    from hpcsgd.comm.nodebarrier import NodeBarrier
    node = world.comm.Split_type(MPI.COMM_TYPE_SHARED, key=world.rank)
    barrier = NodeBarrier(node, poll_s=2e-4)
    barrier.futex._number = ctypes.c_long(100_000)
    late, wall, cpu = _wait_behind_a_late_rank(barrier.wait, node, 0.6)
    if not late:
        assert barrier.futex is None  # gave up on the futex, polls with sleeps instead
        assert wall > 0.3 and cpu < 0.25 * wall, (wall, cpu)
    barrier.wait()  # and it still works as a barrier
    barrier.free()
    node.Free()
