"""Replica safety: one starting point for every rank, consistent buffers, and checks that the
replicas are still identical (cheap checksum every N steps, full digest at the end)."""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn as nn


@torch.no_grad()
def broadcast_state_(model: nn.Module, backend, root: int = 0) -> None:
    """Every rank starts from rank root's parameters and buffers."""
    for t in list(model.parameters()) + list(model.buffers()):
        backend.broadcast_(t.data, root)


@torch.no_grad()
def average_buffers_(model: nn.Module, backend, world_size: int, watch=None,
                     what: str = "averaging the buffers") -> None:
    """Average floating buffers (BatchNorm running statistics, computed per rank from the
    rank's own batches) so that evaluation and checkpoints use one consistent model.
    Collective; with a watch (hpcsgd/run/watch.py) every rank first passes its gate labelled
    `what` (always, buffers or none), so that a rank that skips this never leaves the others
    waiting for ever; the sums stay the backend's blocking ones (their rounding unchanged)."""
    if watch is not None:
        watch.gate(what)
    for b in model.buffers():
        if b.is_floating_point():
            backend.allreduce_sum_(b.data).div_(world_size)


def parameter_digest(model: nn.Module) -> str:
    """Hash of every parameter's exact bytes: equal digests mean bitwise-identical replicas."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(np.ascontiguousarray(p.detach().numpy()).tobytes())
    return h.hexdigest()[:16]


def check_replicas(model: nn.Module, world) -> None:
    """Raise naming the ranks whose parameters differ from rank 0's (collective)."""
    world.watch.gate("the final check that the replicas are identical")
    digests = world.comm.allgather(parameter_digest(model))
    bad = [r for r, d in enumerate(digests) if d != digests[0]]
    if bad:
        raise RuntimeError(f"replicas diverged: parameters of ranks {bad} differ from rank 0's")


@torch.no_grad()
def weight_checksums(model: nn.Module) -> list[int]:
    """One integer per parameter: the sum of its elements' bit patterns (as int32, summed in
    int64). Integer addition is exact and order-free, so the result does not depend on the
    thread count or the summation order, and any changed bit changes it (short of changes
    that cancel exactly). One read of the weights: about a memory pass, much cheaper than a
    cryptographic digest."""
    sums = []
    for p in model.parameters():
        words = p.detach().contiguous().view(-1)
        if words.element_size() == 4:
            words = words.view(torch.int32)
        elif words.element_size() == 2:
            words = words.view(torch.int16)
        else:
            words = words.view(torch.int64)
        sums.append(int(words.sum(dtype=torch.int64)))
    return sums


def check_consistency(model: nn.Module, world, step: int | None = None) -> None:
    """Periodic cross-rank check (collective, a few bytes per parameter): raise naming the
    diverged ranks and the first differing parameter."""
    mine = weight_checksums(model)
    world.watch.gate(f"the replica checksum at step {step}")
    everyone = world.comm.allgather(mine)
    bad = [r for r, sums in enumerate(everyone) if sums != everyone[0]]
    if bad:
        names = [n for n, _ in model.named_parameters()]
        first = next(i for i, (a, b) in enumerate(zip(everyone[0], everyone[bad[0]])) if a != b)
        at = f" at step {step}" if step is not None else ""
        raise RuntimeError(f"replicas diverged{at}: weights of ranks {bad} differ from rank "
                           f"0's (first differing parameter: {names[first]})")
