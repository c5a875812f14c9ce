"""Backends over torch.distributed process groups: ``gloo`` (always in the CPU wheel) and
the ``ccl`` seam (oneCCL, when a site provides ``oneccl_bindings_for_pytorch``).

The rendezvous address is agreed over MPI, so there is no MASTER_ADDR/MASTER_PORT to set:
rank 0 picks a free TCP port on its host and broadcasts host and port. The default process
group is initialised once per process; every backend object then owns a new group of its
own (collective), so a group used by the communication thread never sees the main thread's
collectives. Built on the communication thread, the library's worker threads inherit the
communication cores.
"""
from __future__ import annotations

import importlib.util
import os
import socket

import torch
import torch.distributed as dist

from hpcsgd.comm.buckets import flat_view
from hpcsgd.config.job import CCL_MODULE  # one name, kept by the config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def init_default_group(world, backend: str) -> None:
    """torch.distributed's default group over the MPI world (collective; once per process)."""
    if dist.is_initialized():
        if dist.get_world_size() != world.size or dist.get_rank() != world.rank:
            raise RuntimeError(f"torch.distributed is already initialised with rank "
                               f"{dist.get_rank()}/{dist.get_world_size()}, but the MPI world "
                               f"is rank {world.rank}/{world.size}")
        return
    single_node = world.num_nodes == 1  # collective: every rank takes part
    address = None
    if world.rank == 0:
        host = "127.0.0.1" if single_node else os.environ.get("HPCSGD_RENDEZVOUS_HOST",
                                                               socket.gethostname())
        address = (host, _free_port())
    host, port = world.comm.bcast(address, root=0)
    dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=world.rank,
                            world_size=world.size)


class TorchDistBackend:
    def __init__(self, world, backend: str):
        init_default_group(world, backend)
        self.group = dist.new_group(backend=backend)
        self.name, self.size, self.rank = backend, world.size, world.rank

    def allreduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.size > 1:
            dist.all_reduce(flat_view(t), op=dist.ReduceOp.SUM, group=self.group)
        return t

    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        if self.size > 1:
            dist.broadcast(flat_view(t), src=root, group=self.group)
        return t

    def alltoall_(self, send: torch.Tensor, recv: torch.Tensor) -> torch.Tensor:
        dist.all_to_all_single(recv, send, group=self.group)
        return recv

    def allgather_(self, send: torch.Tensor, recv: torch.Tensor) -> torch.Tensor:
        dist.all_gather_single(recv, send, group=self.group)
        return recv

    def close(self) -> None:
        if self.group is not None:
            dist.destroy_process_group(self.group)
            self.group = None


def gloo_backend(world) -> TorchDistBackend:
    return TorchDistBackend(world, "gloo")


def ccl_available() -> bool:
    return importlib.util.find_spec(CCL_MODULE) is not None


def ccl_backend(world) -> TorchDistBackend:
    """oneCCL through its torch bindings (Intel's successor of ML-SL); not installable from
    PyPI, so only a site that provides the module can select it."""
    if not ccl_available():
        raise RuntimeError(f"comm.backend = 'ccl' needs the module {CCL_MODULE!r} "
                           "(Intel oneCCL bindings for PyTorch), which is not installed")
    importlib.import_module(CCL_MODULE)  # registers the "ccl" torch.distributed backend
    return TorchDistBackend(world, "ccl")
