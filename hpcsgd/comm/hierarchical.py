"""Hierarchical allreduce for several ranks per node: node-local reduce over shared memory,
leaders' allreduce across nodes, node-local broadcast.

With k ranks per node a flat allreduce sends every byte over the network k times; here only
one rank per node (the leader, node-local rank 0) talks to other nodes, so the inter-node
traffic is that of one rank per node (Codreanu et al. V-A1: each node sends and receives
one model's worth of gradients per step).

The node's ranks share MPI shared-memory windows: a slot of fp32 values per rank, and a
result area beside the leader's slot. The reducer's buckets are allocated in the slots
(buffers()), so packing a gradient writes it straight into shared memory, and each bucket
has a result area of its own. One average (or sum):
  1. a tensor that is not such a bucket is copied into a scratch slot first;
  2. local rank i sums segment i of all slots (in slot order, fp32) into the result area and
     divides it by the world size there: the node-local reduce is done by all the node's
     ranks in parallel, each on 1/k of it, in cache-sized chunks so that the slots are read
     once and the division costs no extra pass over memory;
  3. the leader allreduces the result area across nodes (fp32, or bf16 on the wire);
  4. every rank copies the result back (node-local broadcast), or, when the caller only
     reads it (share=True), uses the result area itself: then no rank copies anything, and
     the gradients the optimizer reads are one copy per node.
Node barriers separate the phases (MPI_Win_sync around each: the window's unified memory
model needs a memory barrier on both sides of a process synchronisation); the next call's
first barrier keeps its writes from overtaking this call's reads (a shared result is read
until the rank launches the same bucket again, i.e. until its next backward pass). With
arrival_poll_s > 0 the barriers sleep in the kernel until the last rank arrives
(hpcsgd/comm/nodebarrier.py): nobody spins, which matters when the node runs more threads
than it has cores.
"""
from __future__ import annotations

import numpy as np
import torch
from hpcsgd.mpi_start import MPI

from hpcsgd.comm.nodebarrier import NodeBarrier


CHUNK = 1 << 15
"""Values per chunk of the node-local reduce: the k slots' chunks and the result's (128 KiB
each) stay in a core's L2 while they are summed and divided."""


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
        arrival_poll_s: > 0 makes node barriers sleep instead of spinning (NodeBarrier)."""
        self.node = node_comm.Dup()
        self.arrival_poll_s = arrival_poll_s
        self.local_rank, self.local_size = self.node.rank, self.node.size
        is_leader = self.local_rank == 0
        self.leaders = comm.Split(0 if is_leader else MPI.UNDEFINED, key=comm.rank)
        self.inter = make_inter(_Group(self.leaders)) if is_leader else None
        self.size = comm.size
        self.arena: _SharedSpace | None = None  # the reducer's buckets live here
        self.per_bucket_results = False
        self.scratch: _SharedSpace | None = None  # any other tensor is copied in here
        self._reserve(max(capacity, 1))
        self.barrier = NodeBarrier(self.node, arrival_poll_s)

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

    def buffers(self, sizes: list[int], shared_results: bool = False) -> list[torch.Tensor]:
        """Flat fp32 tensors of `sizes` values placed in this rank's slot of a shared window
        (collective; once): whatever is packed into them is already where the other ranks of
        the node read it, so their allreduce skips the copy in."""
        if self.arena is not None:
            raise RuntimeError("hierarchical allreduce: buffers() was already called")
        # shared_results: a result area per bucket, so that a shared result stays valid while
        # the later buckets reduce (twice the gradients' memory on the leader); else one
        # result area for the largest bucket, copied back after every call
        self.per_bucket_results = shared_results
        self.arena = _SharedSpace(self.node, sum(sizes),
                                  sum(sizes) if shared_results else max(sizes, default=0))
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
        self.barrier.sync()

    def _node_barrier(self) -> None:
        self._fence()  # this rank's writes are visible before it arrives
        self.barrier.wait()
        self._fence()  # and the others' writes before this rank's reads

    def allreduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum t over all ranks, in place."""
        return self.average_(t, 1)

    def average_(self, t: torch.Tensor, divisor: int, share: bool = False) -> torch.Tensor:
        """Sum t over all ranks and divide by `divisor`. Returns t (in place), or with
        share=True and t one of the tensors of buffers(shared_results=True), the node's shared
        result area holding the average, t left as it was: the caller must only read it, and
        only until this rank averages the same buffer again."""
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
        own_area = space is self.arena and self.per_bucket_results
        share = share and own_area  # a result area used by every call is copied back
        result = space.result[at:at + n] if own_area else space.result[:n]
        self._node_barrier()  # every slot written
        lo, hi = segment(n, self.local_size, self.local_rank)
        slots = [slot[at:at + n] for slot in space.slots]
        for c in range(lo, hi, CHUNK):
            e = min(c + CHUNK, hi)
            acc = result[c:e]
            np.copyto(acc, slots[0][c:e])
            for slot in slots[1:]:  # fixed slot order: same bits on every node
                np.add(acc, slot[c:e], out=acc)
            if divisor != 1:  # before the inter-node sum: sum(x / d) over the nodes
                np.divide(acc, divisor, out=acc)
        self._node_barrier()  # the result area holds the node's sum
        if self.size > self.local_size:  # more than one node
            if self.inter is not None:
                self.inter.allreduce_sum_(torch.from_numpy(result))
            self._node_barrier()  # the result area holds the global sum
        if share:
            return torch.from_numpy(result)
        np.copyto(x, result)
        return t

    def close(self) -> None:
        """Collective. Tensors from buffers() must not be used afterwards."""
        if self.inter is not None and hasattr(self.inter, "close"):
            self.inter.close()
        for space in (self.arena, self.scratch):
            if space is not None:
                space.free()
        self.arena = self.scratch = None
        self.barrier.free()
        if self.leaders != MPI.COMM_NULL:
            self.leaders.Free()
        self.node.Free()


class _Group:
    """The minimal world (comm, rank, size) a backend needs, for the leaders' communicator."""

    def __init__(self, comm: MPI.Comm):
        self.comm, self.rank, self.size = comm, comm.rank, comm.size
