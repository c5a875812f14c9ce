"""Hierarchical allreduce for several ranks per node: node-local reduce over shared memory,
leaders' allreduce across nodes, node-local broadcast.

With k ranks per node a flat allreduce sends every byte over the network k times; here only
one rank per node (the leader, node-local rank 0) talks to other nodes, so the inter-node
traffic is that of one rank per node (Codreanu et al. V-A1: each node sends and receives
one model's worth of gradients per step).

The node's ranks share MPI shared-memory windows: a slot of fp32 values per rank, and a
result area beside the leader's slot. The reducer's buckets are allocated in the slots
(buffers()), so packing a gradient writes it straight into shared memory. One allreduce:
  1. a tensor that is not such a bucket is copied into a scratch slot first;
  2. local rank i sums segment i of all slots (in slot order, fp32) into the result area:
     the node-local reduce is done by all the node's ranks in parallel, each on 1/k of it;
  3. the leader allreduces the result area across nodes (fp32, or bf16 on the wire);
  4. every rank copies the result back (node-local broadcast).
Node barriers separate the phases (MPI_Win_sync around each: the window's unified memory
model needs a memory barrier on both sides of a process synchronisation); the next call's
first barrier keeps its writes from overtaking this call's reads. With arrival_poll_s > 0 a
barrier is a flag per rank in shared memory (each rank writes only its own: no atomics
needed) that the others poll with sleeps in between: the last rank to arrive releases the
others without any MPI progress on their side, and nobody spins, which matters when the
node runs more threads than it has cores.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from mpi4py import MPI


def segment(n: int, parts: int, i: int) -> tuple[int, int]:
    """Bounds of part i when n elements are split into `parts` near-equal contiguous parts."""
    base, extra = divmod(n, parts)
    lo = i * base + min(i, extra)
    return lo, lo + base + (1 if i < extra else 0)


class _SharedSpace:
    """One shared-memory window of the node: `own` fp32 values per rank, and `result` more
    beside the leader's (collective on the node)."""

    def __init__(self, node: MPI.Comm, own: int, result: int):
        leader = node.rank == 0
        self.win = MPI.Win.Allocate_shared(4 * (own + (result if leader else 0)), 4, comm=node)
        self.win.Lock_all()  # passive epoch for the lifetime of the window (MPI 3 shm idiom)
        self.slots = [np.frombuffer(self.win.Shared_query(r)[0], dtype=np.float32, count=own)
                      for r in range(node.size)]
        self.result = np.frombuffer(self.win.Shared_query(0)[0], dtype=np.float32,
                                    count=result, offset=4 * own)
        self.own, self.result_size = own, result

    def offset_of(self, t: torch.Tensor, slot: np.ndarray) -> int | None:
        """Element offset of t inside `slot`, or None if t lives elsewhere."""
        base = slot.ctypes.data
        ptr = t.data_ptr()
        if base <= ptr and ptr + 4 * t.numel() <= base + 4 * slot.size:
            return (ptr - base) // 4
        return None

    def free(self) -> None:
        self.win.Unlock_all()
        self.win.Free()


class HierarchicalAllreduce:
    name = "hierarchical"

    def __init__(self, comm: MPI.Comm, node_comm: MPI.Comm, make_inter, capacity: int = 0,
                 arrival_poll_s: float = 0.0):
        """comm: all ranks; node_comm: this node's ranks (both duplicated here, collective).
        make_inter(leaders_world) -> object with allreduce_sum_ over the node leaders.
        arrival_poll_s: > 0 makes node barriers sleep between polls instead of spinning."""
        self.node = node_comm.Dup()
        self.arrival_poll_s = arrival_poll_s
        self.local_rank, self.local_size = self.node.rank, self.node.size
        is_leader = self.local_rank == 0
        self.leaders = comm.Split(0 if is_leader else MPI.UNDEFINED, key=comm.rank)
        self.inter = make_inter(_Group(self.leaders)) if is_leader else None
        self.size = comm.size
        self.arena: _SharedSpace | None = None  # the reducer's buckets live here
        self.scratch: _SharedSpace | None = None  # any other tensor is copied in here
        self._reserve(max(capacity, 1))
        # barrier flags: one int64 per rank, written only by its rank
        self.flag_win = MPI.Win.Allocate_shared(8, 8, comm=self.node)
        self.flag_win.Lock_all()
        self.flags = [np.frombuffer(self.flag_win.Shared_query(r)[0], dtype=np.int64, count=1)
                      for r in range(self.local_size)]
        self.flags[self.local_rank][0] = 0
        self._epoch = 0
        self.node.Barrier()  # every flag initialised

    @property
    def capacity(self) -> int:
        return self.scratch.own

    def _reserve(self, n: int) -> None:
        """Grow the scratch window to n values per rank (collective on the node; every rank
        asks for the same sizes in the same order)."""
        if self.scratch is not None and n <= self.scratch.own:
            return
        if self.scratch is not None:
            self.scratch.free()
        self.scratch = _SharedSpace(self.node, n, n)

    def buffers(self, sizes: list[int]) -> list[torch.Tensor]:
        """Flat fp32 tensors of `sizes` values placed in this rank's slot of a shared window
        (collective; once): whatever is packed into them is already where the other ranks of
        the node read it, so their allreduce skips the copy in."""
        if self.arena is not None:
            raise RuntimeError("hierarchical allreduce: buffers() was already called")
        self.arena = _SharedSpace(self.node, sum(sizes), max(sizes, default=0))
        mine = self.arena.slots[self.local_rank]
        out, offset = [], 0
        for n in sizes:
            out.append(torch.from_numpy(mine[offset:offset + n]))
            offset += n
        return out

    def _fence(self) -> None:
        """MPI_Win_sync on every window: the memory barrier of MPI's shared-memory model."""
        for space in (self.arena, self.scratch):
            if space is not None:
                space.win.Sync()
        self.flag_win.Sync()

    def _node_barrier(self) -> None:
        self._fence()  # this rank's writes are visible before its flag
        if self.arrival_poll_s > 0:
            self._epoch += 1
            self.flags[self.local_rank][0] = self._epoch
            while any(f[0] < self._epoch for f in self.flags):
                time.sleep(self.arrival_poll_s)
        else:
            self.node.Barrier()
        self._fence()  # and the others' writes before this rank's reads

    def allreduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype != torch.float32 or not t.is_contiguous():
            raise TypeError(f"hierarchical allreduce takes contiguous fp32 tensors, got {t.dtype}")
        n = t.numel()
        x = t.view(-1).numpy()
        space, at = self.arena, None
        if space is not None:
            at = space.offset_of(t, space.slots[self.local_rank])
        if at is None:  # not one of our buffers: copy it into the scratch window
            self._reserve(n)
            space, at = self.scratch, 0
            np.copyto(space.slots[self.local_rank][:n], x)
        self._node_barrier()  # every slot written
        lo, hi = segment(n, self.local_size, self.local_rank)
        acc = space.result[lo:hi]
        np.copyto(acc, space.slots[0][at + lo:at + hi])
        for j in range(1, self.local_size):  # fixed slot order: same bits on every node
            np.add(acc, space.slots[j][at + lo:at + hi], out=acc)
        self._node_barrier()  # the result area holds the node's sum
        if self.size > self.local_size:  # more than one node
            if self.inter is not None:
                self.inter.allreduce_sum_(torch.from_numpy(space.result[:n]))
            self._node_barrier()  # the result area holds the global sum
        np.copyto(x, space.result[:n])
        return t

    def close(self) -> None:
        """Collective. Tensors from buffers() must not be used afterwards."""
        if self.inter is not None and hasattr(self.inter, "close"):
            self.inter.close()
        for space in (self.arena, self.scratch):
            if space is not None:
                space.free()
        self.arena = self.scratch = None
        self.flag_win.Unlock_all()
        self.flag_win.Free()
        if self.leaders != MPI.COMM_NULL:
            self.leaders.Free()
        self.node.Free()


class _Group:
    """The minimal world (comm, rank, size) a backend needs, for the leaders' communicator."""

    def __init__(self, comm: MPI.Comm):
        self.comm, self.rank, self.size = comm, comm.rank, comm.size
