"""Hierarchical allreduce for several ranks per node: node-local reduce over shared memory,
leaders' allreduce across nodes, node-local broadcast.

With k ranks per node a flat allreduce sends every byte over the network k times; here only
one rank per node (the leader, node-local rank 0) talks to other nodes, so the inter-node
traffic is that of one rank per node (Codreanu et al. V-A1: each node sends and receives
one model's worth of gradients per step).

The node's ranks share one MPI shared-memory window: a slot of `capacity` fp32 values per
rank, and a result area beside the leader's slot. One allreduce of n values:
  1. each rank copies its buffer into its slot;
  2. local rank i sums segment i of all slots (in slot order, fp32) into the result area:
     the node-local reduce is done by all the node's ranks in parallel, each on 1/k of it;
  3. the leader allreduces the result area across nodes (fp32, or bf16 on the wire);
  4. every rank copies the result back (node-local broadcast).
Three node barriers separate the phases (MPI_Win_sync around each: the window's unified
memory model needs a memory barrier on both sides of a process synchronisation); the next
call's first barrier keeps its writes from overtaking this call's reads.
"""
from __future__ import annotations

import numpy as np
import torch
from mpi4py import MPI


def segment(n: int, parts: int, i: int) -> tuple[int, int]:
    """Bounds of part i when n elements are split into `parts` near-equal contiguous parts."""
    base, extra = divmod(n, parts)
    lo = i * base + min(i, extra)
    return lo, lo + base + (1 if i < extra else 0)


class HierarchicalAllreduce:
    name = "hierarchical"

    def __init__(self, comm: MPI.Comm, node_comm: MPI.Comm, make_inter, capacity: int = 0):
        """comm: all ranks; node_comm: this node's ranks (both duplicated here, collective).
        make_inter(leaders_world) -> object with allreduce_sum_ over the node leaders."""
        self.node = node_comm.Dup()
        self.local_rank, self.local_size = self.node.rank, self.node.size
        is_leader = self.local_rank == 0
        self.leaders = comm.Split(0 if is_leader else MPI.UNDEFINED, key=comm.rank)
        self.inter = make_inter(_Group(self.leaders)) if is_leader else None
        self.size = comm.size
        self.win, self.slots, self.result, self.capacity = None, [], None, 0
        self._reserve(max(capacity, 1))

    def _reserve(self, n: int) -> None:
        """(Re)allocate the shared window for n values per rank (collective on the node;
        every rank asks for the same sizes in the same order)."""
        if n <= self.capacity:
            return
        if self.win is not None:
            self.win.Unlock_all()
            self.win.Free()
        own = 2 * n if self.local_rank == 0 else n  # the leader also holds the result area
        self.win = MPI.Win.Allocate_shared(own * 4, 4, comm=self.node)
        self.win.Lock_all()  # passive epoch for the lifetime of the window (MPI 3 shm idiom)
        self.slots = []
        for r in range(self.local_size):
            buf, _ = self.win.Shared_query(r)
            self.slots.append(np.frombuffer(buf, dtype=np.float32, count=n))
        leader, _ = self.win.Shared_query(0)
        self.result = np.frombuffer(leader, dtype=np.float32, count=n, offset=n * 4)
        self.capacity = n

    def _node_barrier(self) -> None:
        self.win.Sync()
        self.node.Barrier()
        self.win.Sync()

    def allreduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype != torch.float32 or not t.is_contiguous():
            raise TypeError(f"hierarchical allreduce takes contiguous fp32 tensors, got {t.dtype}")
        n = t.numel()
        self._reserve(n)
        x = t.view(-1).numpy()
        np.copyto(self.slots[self.local_rank][:n], x)
        self._node_barrier()  # every slot written
        lo, hi = segment(n, self.local_size, self.local_rank)
        acc = self.result[lo:hi]
        np.copyto(acc, self.slots[0][lo:hi])
        for j in range(1, self.local_size):  # fixed slot order: same bits on every node
            np.add(acc, self.slots[j][lo:hi], out=acc)
        self._node_barrier()  # the result area holds the node's sum
        if self.size > self.local_size:  # more than one node
            if self.inter is not None:
                self.inter.allreduce_sum_(torch.from_numpy(self.result[:n]))
            self._node_barrier()  # the result area holds the global sum
        np.copyto(x, self.result[:n])
        return t

    def close(self) -> None:
        if self.inter is not None and hasattr(self.inter, "close"):
            self.inter.close()
        if self.win is not None:
            self.win.Unlock_all()
            self.win.Free()
            self.win = None
        if self.leaders != MPI.COMM_NULL:
            self.leaders.Free()
        self.node.Free()


class _Group:
    """The minimal world (comm, rank, size) a backend needs, for the leaders' communicator."""

    def __init__(self, comm: MPI.Comm):
        self.comm, self.rank, self.size = comm, comm.rank, comm.size
