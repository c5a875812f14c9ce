"""Decode worker processes: records -> samples written straight into shared memory.

Each rank forks `workers` processes at start. Batches live in slots of one anonymous shared
mapping (MAP_SHARED | MAP_ANONYMOUS, made before the fork, so no file and no copy: the workers
write the pixels where the training process reads them). Only small control messages travel
through pipes: a task (ticket, slot, offset, record indices, mode, seed key) and a result
(labels, bad keys). Every source has its own ring of slots, so evaluation in the middle of an
epoch never waits behind training batches decoded ahead. The number of slots bounds the
prefetch. The workers inherit the rank's CPU set; `set_affinity` pins them elsewhere (the
core plan assigns data cores).

Shutdown: `close()` (also at garbage collection and interpreter exit) asks the workers to
stop, then terminates stragglers. A worker dies with its rank (PR_SET_PDEATHSIG), so an
MPI_Abort leaves no orphan. A worker that dies or raises is reported by the rank waiting for
it, naming the worker and its exit code or traceback; the rank never waits forever.
"""
from __future__ import annotations

import ctypes
import itertools
import mmap
import multiprocessing as mp
import os
import signal
import traceback
import weakref
from collections import deque
from multiprocessing.connection import wait

import numpy as np

WAIT_LIMIT_S = 600.0  # no result for this long: a worker is stuck, stop instead of hanging


class WorkerError(RuntimeError):
    pass


class DecodePool:
    """Worker processes filling shared-memory slots for one or more sources.

    `sources[i].fill(out, indices, mode=, seed_key=)` runs in the workers for ring i, whose
    slots hold `slots` batches of up to `capacity` samples of `sources[i].sample_shape`.
    """

    def __init__(self, sources, *, workers: int, slots: int, capacity: int):
        if workers < 1:
            raise ValueError(f"a DecodePool needs >= 1 worker, got {workers}")
        self.capacity = capacity
        shapes = [(slots, capacity, *s.sample_shape) for s in sources]
        sizes = [int(np.prod(shape)) for shape in shapes]
        self._mem = mmap.mmap(-1, max(1, sum(sizes)))  # anonymous, shared with forked children
        offsets = np.cumsum([0, *sizes])
        self.rings = [np.frombuffer(self._mem, np.uint8, size, int(offset)).reshape(shape)
                      for shape, size, offset in zip(shapes, sizes, offsets)]
        self._free = [deque(range(slots)) for _ in sources]
        self._tickets: dict[int, dict] = {}
        self._next_ticket = itertools.count()
        self.chunk = -(-capacity // workers)  # every worker helps with every batch

        ctx = mp.get_context("fork")  # children share the rank's pages; no module re-import
        self._tasks, self._results = ctx.SimpleQueue(), ctx.SimpleQueue()
        parent = os.getpid()
        self.procs = [ctx.Process(target=_worker_main, name=f"hpcsgd-decode-{i}", daemon=True,
                                  args=(i, sources, self.rings, self._tasks, self._results,
                                        parent))
                      for i in range(workers)]
        for p in self.procs:
            p.start()
        self._closer = weakref.finalize(self, _shutdown, self.procs, self._tasks)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def set_affinity(self, cpu_sets) -> None:
        """Pin worker i to cpu_sets[i % len(cpu_sets)] (iterables of core ids)."""
        cpu_sets = [set(c) for c in cpu_sets]
        for i, p in enumerate(self.procs):
            os.sched_setaffinity(p.pid, cpu_sets[i % len(cpu_sets)])

    def free_slots(self, ring: int) -> int:
        return len(self._free[ring])

    def submit(self, ring: int, indices, *, mode: str, seed_key: tuple) -> int:
        """Queue a batch (len(indices) <= capacity) into a free slot of `ring`; a ticket."""
        if len(indices) > self.capacity:
            raise ValueError(f"batch of {len(indices)} exceeds the slot capacity {self.capacity}")
        while not self._free[ring]:
            self._pump()  # waits for results (sync point), freeing discarded slots
        slot = self._free[ring].popleft()
        ticket = next(self._next_ticket)
        starts = range(0, len(indices), self.chunk)
        self._tickets[ticket] = {"ring": ring, "slot": slot, "n": len(indices),
                                 "left": len(starts), "results": {}, "discard": False,
                                 "error": None}
        for start in starts:
            part = [int(i) for i in indices[start:start + self.chunk]]
            self._tasks.put((ticket, ring, slot, start, part, mode, seed_key))
        return ticket

    def wait(self, ticket: int):
        """(uint8 samples of the batch, [(offset, FillResult)] in order) once all are done."""
        entry = self._tickets[ticket]
        while entry["left"]:
            self._pump()
        if entry["error"] is not None:
            self.release(ticket)
            raise entry["error"]
        pixels = self.rings[entry["ring"]][entry["slot"], :entry["n"]]
        return pixels, [entry["results"][k] for k in sorted(entry["results"])]

    def release(self, ticket: int) -> None:
        """The slot may be reused (its pixels have been copied out); idempotent."""
        entry = self._tickets.pop(ticket, None)
        if entry is not None:
            self._free[entry["ring"]].append(entry["slot"])

    def discard(self, ticket: int) -> None:
        """Forget a batch no one will read; its slot is freed once its workers are done."""
        entry = self._tickets[ticket]
        if entry["left"] == 0:
            self.release(ticket)
        else:
            entry["discard"] = True

    def _pump(self) -> None:
        """Handle one result message; fail if a worker died or nothing came for too long."""
        reader = self._results._reader
        sentinels = {p.sentinel: p for p in self.procs}
        ready = wait([reader, *sentinels], timeout=WAIT_LIMIT_S)
        if reader not in ready:
            dead = [p for p in self.procs if not p.is_alive()]
            if dead:
                raise WorkerError(f"decode worker {dead[0].name} (pid {dead[0].pid}) died "
                                  f"with exit code {dead[0].exitcode}")
            raise WorkerError(f"no decoded batch for {WAIT_LIMIT_S:.0f} s from "
                              f"{len(self.procs)} decode workers")
        status, ticket, offset, payload = self._results.get()
        entry = self._tickets.get(ticket)
        if entry is None:
            return
        entry["left"] -= 1
        if status == "ok":
            entry["results"][offset] = payload
        elif entry["error"] is None:
            entry["error"] = payload
        if entry["left"] == 0 and entry["discard"]:
            self.release(ticket)

    def close(self) -> None:
        self._closer()


def _shutdown(procs, tasks) -> None:
    for p in procs:
        if p.is_alive():
            try:
                tasks.put(None)
            except (OSError, ValueError):
                break
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
        if p.is_alive():  # blocked with SIGTERM pending (e.g. on a lock a killed sibling held)
            p.kill()
            p.join()


def _die_with_parent(parent: int) -> None:
    """The kernel kills this worker when the rank that forked it ends, however it ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the rank died before prctl took effect
        os._exit(1)


def _worker_main(wid, sources, rings, tasks, results, parent) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the rank's to handle
    import torch
    torch.set_num_threads(1)  # one decode core per worker; never the rank's OpenMP pool
    while True:
        task = tasks.get()
        if task is None:
            return
        ticket, ring, slot, start, indices, mode, seed_key = task
        try:
            out = rings[ring][slot, start:start + len(indices)]
            result = sources[ring].fill(out, indices, mode=mode, seed_key=seed_key)
            results.put(("ok", ticket, start, result))
        except Exception:  # noqa: BLE001 - reported to the rank, which stops the run
            results.put(("error", ticket, start, WorkerError(
                f"decode worker {wid} failed on records {indices[:8]} of ring {ring}:\n"
                f"{traceback.format_exc()}")))
