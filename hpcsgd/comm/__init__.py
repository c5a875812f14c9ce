"""Collective communication: backends behind one interface, and the gradient reducer.

A backend sums contiguous tensors in place across the ranks of a world, broadcasts from a
root, and moves raw chunks (alltoall, allgather) for the bf16 wire:
- ``mpi``  mpi4py's buffer API (default; hpcsgd/comm/mpi.py);
- ``gloo`` torch.distributed's gloo, rendezvous agreed over MPI (hpcsgd/comm/torchdist.py);
- ``ccl``  oneCCL's torch bindings, the seam for a site that has them.
On top of a backend: bf16 on the wire with fp32 accumulation (wire.py), hierarchical
node-local/leaders allreduce (hierarchical.py), the communication thread on the configured
communication cores (engine.py), the stall watchdog (watchdog.py) and the bucketed gradient
reducer that overlaps the backward pass (reducer.py).
"""
from __future__ import annotations

from hpcsgd.mpi_start import MPI

from hpcsgd.comm.engine import CommEngine, Progress
from hpcsgd.comm.mpi import MPIBackend
from hpcsgd.comm.torchdist import ccl_backend, gloo_backend

BACKENDS = {
    "mpi": lambda world, private, poll, message: MPIBackend(
        world, dup=private, arrival_poll_s=poll, message_bytes=message),
    # every gloo/ccl backend owns a new group; their waits block in the kernel, no polling
    "gloo": lambda world, private, poll, message: gloo_backend(world),
    "ccl": lambda world, private, poll, message: ccl_backend(world),
}


def build_backend(name: str, world, *, private: bool = False, arrival_poll_s: float = 0.0,
                  message_bytes: int = 0):
    """The backend `name` over `world` (collective). private: on communicators of its own,
    so its collectives never interleave with other users of the world's communicator.
    arrival_poll_s, message_bytes: mpi only (waiting for late ranks with sleeps instead of
    spinning; the largest single Allreduce), see hpcsgd/comm/mpi.py."""
    if name not in BACKENDS:
        raise ValueError(f"comm.backend = {name!r}: unknown (available: {', '.join(BACKENDS)})")
    return BACKENDS[name](world, private, arrival_poll_s, message_bytes)


def use_hierarchical(cfg, world) -> bool:
    """comm.hierarchical, with "auto" resolved the same way on every rank (collective)."""
    if cfg.hierarchical != "auto":
        return cfg.hierarchical == "on"
    most_per_node = world.comm.allreduce(world.local_size, op=MPI.MAX)
    return cfg.backend == "mpi" and most_per_node > 1


def build_allreduce(cfg, world):
    """The in-place fp32 sum used for gradient buckets, as the [comm] section `cfg` asks:
    returns (allreduce_, average_ or None, buffers or None, objects to close), average_ being
    a fused sum-and-divide where the allreduce has one. Collective."""
    from hpcsgd.comm.hierarchical import HierarchicalAllreduce
    from hpcsgd.comm.wire import BF16Wire

    def over(backend):
        return BF16Wire(backend) if cfg.wire_dtype == "bfloat16" else backend

    poll, message = cfg.arrival_poll_us * 1e-6, int(cfg.message_mb * 2**20)
    if use_hierarchical(cfg, world):
        # the leaders' communicator is freed by h.close()
        h = HierarchicalAllreduce(
            world.comm, world.node_comm,
            lambda leaders: over(MPIBackend(leaders, arrival_poll_s=poll, message_bytes=message)),
            arrival_poll_s=poll)
        return h.allreduce_sum_, h.average_, h.buffers, [h]
    backend = build_backend(cfg.backend, world, private=True, arrival_poll_s=poll,
                            message_bytes=message)
    return over(backend).allreduce_sum_, None, None, [backend]


def require_thread_multiple() -> None:
    """The communication thread and the watchdog call MPI while the main thread may too."""
    provided = MPI.Query_thread()
    if provided < MPI.THREAD_MULTIPLE:
        names = {MPI.THREAD_SINGLE: "SINGLE", MPI.THREAD_FUNNELED: "FUNNELED",
                 MPI.THREAD_SERIALIZED: "SERIALIZED"}
        raise RuntimeError(
            f"the MPI library granted MPI_THREAD_{names.get(provided, provided)}, but the "
            "communication thread and the stall watchdog need MPI_THREAD_MULTIPLE "
            f"({MPI.Get_library_version().splitlines()[0]}); use an MPI built with thread "
            "support, or run with comm.overlap = false and comm.stall_timeout_s = 0")


def build_reducer(model, cfg, world, *, gradients_read_only: bool = False):
    """The gradient reducer for `model` as configured in the [comm] section `cfg`
    (collective: every rank builds it at the same point). gradients_read_only: the training
    loop modifies no averaged gradient in place and calls reducer.zero_grad() after the
    optimizer step, so the gradients may be the node's shared memory (GradientReducer)."""
    from hpcsgd.comm.reducer import GradientReducer
    from hpcsgd.comm.watchdog import Watchdog

    bucket_bytes = int(cfg.bucket_mb * 2**20)
    use_watchdog = cfg.stall_timeout_s > 0 and world.size > 1
    if cfg.overlap or use_watchdog:
        require_thread_multiple()
    engine, progress = None, Progress()
    if cfg.overlap:
        engine = CommEngine(cfg.comm_cores, priority_boost=cfg.priority_boost)
        progress = engine.progress
        # built on the communication thread: threads a library starts inherit its cores
        allreduce_, average_, buffers, closers = engine.call(build_allreduce, cfg, world,
                                                             label="build backend")
    else:
        allreduce_, average_, buffers, closers = build_allreduce(cfg, world)
    if use_watchdog:
        closers.insert(0, Watchdog(world.comm, progress, timeout_s=cfg.stall_timeout_s,
                                   cores=cfg.comm_cores))
    if engine is not None:
        closers.append(engine)
    return GradientReducer(model, allreduce_, world_size=world.size, bucket_bytes=bucket_bytes,
                           engine=engine, progress=progress, closers=closers, buffers=buffers,
                           average_=average_, gradients_read_only=gradients_read_only)
