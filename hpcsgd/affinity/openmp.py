"""Binding the OpenMP team of a running process, one thread per core.

OMP_PLACES / OMP_PROC_BIND / KMP_AFFINITY are read once, when the OpenMP runtime loads (here:
when torch is imported, before hpcsgd knows its rank), so inside a rank they can no longer
place the team. Instead we run one parallel region of the team's size through the runtime's
GNU entry point `GOMP_parallel` (libgomp; Intel's libiomp5 and LLVM's libomp export it too):
thread i >= 1 sets its own affinity (sched_setaffinity on pid 0 = the calling thread) to
the i-th compute CPU. The runtime keeps the same threads for later regions of the same size, so
torch's kernels then run on them where they were put.
"""
from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

_RUNTIMES = (("libgomp", "gnu"), ("libiomp", "intel"), ("libomp", "llvm"))


def loaded_runtime(maps: str | None = None) -> tuple[str, str] | None:
    """(path, "gnu" | "intel" | "llvm") of the OpenMP runtime mapped into this process; None
    when there is none or more than one (then the team is not re-bound)."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return None
    found = {}
    for line in maps.splitlines():
        path = line.split()[-1] if line.split() else ""
        name = os.path.basename(path)
        if name.startswith("libomptarget"):
            continue  # offloading plugin, not a runtime
        for prefix, kind in _RUNTIMES:
            if name.startswith(prefix) and ".so" in name:
                found[path] = kind
    if len(found) != 1:
        # none, or several runtimes (torch's plus one pulled in by another library): which
        # one runs torch's team is unknown, and binding the other's would do nothing
        return None
    return next(iter(found.items()))


_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def bind_team(cpus: list[int], threads: int, on_thread=None) -> dict[int, int]:
    """Pin OpenMP thread i >= 1 of a `threads`-thread team to cpus[i % len(cpus)]; thread 0
    (the calling thread) keeps its mask, the set of all `cpus`, so that processes and threads
    it starts later (tests' subprocesses, torch's inter-op pool) are not confined to one core;
    the scheduler puts it on the one core the others leave free. Returns {native thread id:
    CPU, or -1 for thread 0}. on_thread(): also run on every thread >= 1 (e.g. its memory
    policy). Raises RuntimeError when no OpenMP runtime is loaded or a thread could not be
    pinned."""
    found = loaded_runtime()
    if found is None:
        raise RuntimeError("no OpenMP runtime is loaded in this process")
    lib = ctypes.CDLL(found[0])  # the already-loaded library: the same thread pool as torch's
    lib.omp_get_thread_num.restype = ctypes.c_int
    lib.GOMP_parallel.argtypes = [_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    placed: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def body(_data):
        i = lib.omp_get_thread_num()
        if i == 0:
            with lock:
                placed[threading.get_native_id()] = -1
            return
        cpu = cpus[i % len(cpus)]
        try:
            os.sched_setaffinity(0, {cpu})
            if on_thread is not None:
                on_thread()
        except OSError as e:
            with lock:
                errors.append(f"OpenMP thread {i} -> CPU {cpu}: {e.strerror}")
            return
        with lock:
            placed[threading.get_native_id()] = cpu

    callback = _CALLBACK(body)  # kept alive until GOMP_parallel returns
    lib.GOMP_parallel(callback, None, threads, 0)
    if errors:
        raise RuntimeError("; ".join(errors))
    if len(placed) != threads:
        raise RuntimeError(f"the OpenMP runtime ran {len(placed)} threads, not {threads}")
    return placed


def thread_affinities(pid: int | None = None) -> dict[int, list[int]]:
    """{thread id: allowed CPUs} of every thread of a process (Linux /proc)."""
    pid = os.getpid() if pid is None else pid
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = sorted(os.sched_getaffinity(int(task.name)))
        except OSError:  # the thread ended meanwhile
            continue
    return out
