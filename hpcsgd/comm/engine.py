"""The communication thread: the one place where gradient collectives are called.

Codreanu et al. (IV-E) ran Intel ML-SL's endpoint servers on the last cores of each node
(KNL: 64 OpenMP cores + 4 communication cores) so that the allreduce of one layer's gradients
went on while the backward pass of the earlier layers kept the compute cores busy. Here one
Python thread per rank plays that part: it is pinned to the configured communication cores,
takes jobs (one per gradient bucket) in order, and blocks inside the MPI/gloo call with the GIL
released, so the compute threads are never interrupted by communication. MPI libraries make no
asynchronous progress on their own (an Iallreduce left alone only completes in Wait), which is
why a thread that sits in the blocking call is needed.

Every job passes through a ``Progress`` record (sequence number, label, start time) that the
stall watchdog reads (hpcsgd/comm/watchdog.py). All ranks submit the same jobs in the same
order, so sequence numbers compare across ranks.

After a job fails the engine runs nothing more: the jobs queued behind it finish with an error
that names it, and a later submit() is refused. A thread that went on with the next bucket
would let the other ranks finish collectives this rank no longer takes part in correctly (the
hierarchical allreduce's node barriers count arrivals only: the node's ranks would publish a
bucket this rank never summed into); stopped, the rank is simply missing, which the watchdog
reports, and the failure reaches the caller at its next wait() or submit().
"""
from __future__ import annotations

import atexit
import ctypes
import os
import queue
import threading
import time
import weakref


def pin_current_thread(cores: list[int]) -> None:
    """Restrict the calling thread to `cores` (Linux: sched_setaffinity on a thread id; pid 0
    is the calling thread, not the process). Threads it creates later inherit the mask."""
    if not cores:
        return
    # the mask may leave the creating thread's cores, but not the job's cpuset (cgroup)
    try:
        os.sched_setaffinity(0, set(cores))
    except OSError as e:
        raise ValueError(f"comm.comm_cores = {list(cores)}: cannot run there ({e.strerror}; "
                         f"{os.cpu_count()} CPUs on this host)") from None
    missing = sorted(set(cores) - os.sched_getaffinity(0))
    if missing:
        raise ValueError(f"comm.comm_cores = {list(cores)}: cores {missing} are outside this "
                         "job's CPU set")


def boost_current_thread(boost: int) -> None:
    """Lower the calling thread's nice value by `boost` (Linux: threads have their own nice
    value; PRIO_PROCESS 0 is the calling thread). When the compute threads use every core,
    this lets the communication thread take a core the moment it has work (it sleeps
    otherwise), in place of a core of its own."""
    if boost <= 0:
        return
    current = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, max(-20, current - boost))
    except PermissionError:
        raise ValueError(f"comm.priority_boost = {boost}: not permitted to lower the "
                         f"communication thread's nice value below {current} (needs "
                         "CAP_SYS_NICE or an RLIMIT_NICE allowance; use 0)") from None


def single_threaded_torch() -> None:
    """Torch ops on the calling thread (the bf16 wire's conversions and sums) run on it alone.
    A thread that is not the main thread starts with OpenMP's default team size, so its first
    parallel op starts a team of its own: threads that inherit the communication cores and
    spin there after each op. torch.set_num_threads cannot be used here: it also sets the
    process-wide count that other threads adopt at their first parallel op (the main thread's
    team would shrink to 1 if it has not run one yet). Instead: let torch initialise this
    thread first (torch.get_num_threads does, once per thread; later ops then leave the
    thread's setting alone), then set this thread's own team sizes, OpenMP's and MKL's (BLAS
    calls), with the calls that act on the calling thread only, looked up through torch's own
    library so that they are the runtimes torch uses. tests/unit/test_comm_parts.py checks
    both sides."""
    import torch
    torch.get_num_threads()  # torch's per-thread initialisation of the team size
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib",
                                       "libtorch_cpu.so"))
    except OSError:
        return  # not a Linux build of torch: nothing known to set
    for name in ("omp_set_num_threads", "MKL_Set_Num_Threads_Local"):  # C entry points
        fn = getattr(lib, name, None)
        if fn is not None:
            fn(ctypes.c_int(1))


class Progress:
    """What this rank's collectives are doing, for the watchdog: the sequence number of the
    last collective entered, its label, whether it is still in flight and since when."""

    def __init__(self):
        # one tuple, replaced atomically: (entered, label, busy, since)
        self.state = (0, "nothing yet", False, time.monotonic())

    def enter(self, label: str) -> int:
        seq = self.state[0] + 1
        self.state = (seq, label, True, time.monotonic())
        return seq

    def leave(self) -> None:
        seq, label, _, _ = self.state
        self.state = (seq, label, False, time.monotonic())


class Handle:
    """Completion of one job; ``wait()`` returns its result or re-raises its exception."""

    def __init__(self, label: str):
        self.label = label
        self._done = threading.Event()
        self._result = None
        self._error: BaseException | None = None

    def _finish(self, result=None, error: BaseException | None = None) -> None:
        self._result, self._error = result, error
        self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self):
        self._done.wait()
        if self._error is not None:
            raise RuntimeError(f"communication job {self.label!r} failed: "
                               f"{type(self._error).__name__}: {self._error}") from self._error
        return self._result


_STOP = object()
_live_engines: "weakref.WeakSet[CommEngine]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # registered after mpi4py's own atexit finalizer, so it runs first: no thread may still
    # be inside MPI when MPI_Finalize is called
    for engine in list(_live_engines):
        engine.close(timeout=10.0)


class CommEngine:
    """One communication thread pinned to `cores` (and `priority_boost` nice levels above
    the process), running submitted jobs in order."""

    def __init__(self, cores: list[int] | None = None, name: str = "hpcsgd-comm",
                 priority_boost: int = 0):
        self.cores = list(cores or [])
        self.priority_boost = priority_boost
        self.progress = Progress()
        self.native_id: int | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.failure: tuple[str, BaseException] | None = None
        """(label, error) of the first job that failed; no job runs after it."""
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error
        _live_engines.add(self)

    def _run(self) -> None:
        try:
            pin_current_thread(self.cores)
            boost_current_thread(self.priority_boost)
            single_threaded_torch()
            self.native_id = threading.get_native_id()
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            self._start_error = e
            self._started.set()
            return
        self._started.set()
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            handle, fn, args, tracked = job
            if self.failure is not None:  # refused: see the module doc
                handle._finish(error=RuntimeError(f"not run: {self._failed_first()}"))
                continue
            if tracked:
                self.progress.enter(handle.label)
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                self.failure = (handle.label, e)
                handle._finish(error=e)
            else:
                handle._finish(result)
            finally:
                if tracked:
                    self.progress.leave()

    def submit(self, fn, *args, label: str = "job", tracked: bool = True) -> Handle:
        """Queue fn(*args) on the communication thread. `tracked` jobs are collectives the
        watchdog watches (every rank must submit the same tracked jobs in the same order)."""
        if not self._thread.is_alive():
            raise RuntimeError("the communication thread is not running (engine closed?)")
        if self.failure is not None:
            raise RuntimeError(f"communication job {label!r} refused: {self._failed_first()}")
        handle = Handle(label)
        self._jobs.put((handle, fn, args, tracked))
        return handle

    def _failed_first(self) -> str:
        label, error = self.failure
        return (f"communication job {label!r} failed before it ({type(error).__name__}: "
                f"{error}), and no later job runs on this rank")

    def call(self, fn, *args, label: str = "call", tracked: bool = False):
        """Run fn(*args) on the communication thread and return its result (blocking)."""
        return self.submit(fn, *args, label=label, tracked=tracked).wait()

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread after the jobs already queued (a thread stuck in a collective is
        left behind after `timeout` seconds; the watchdog deals with stuck collectives)."""
        if self._thread.is_alive():
            self._jobs.put(_STOP)
            self._thread.join(timeout)
        _live_engines.discard(self)
