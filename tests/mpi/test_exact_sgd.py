"""Synchronous SGD is exact: N ranks with local batch B/N take the same steps as 1 rank with
batch B. Each rank also computes the 1-rank reference itself (no communication) to compare.

With BatchNorm the documented difference is that each rank normalizes with its own batch's
statistics: the distributed run equals a 1-rank run whose BN layers see the B/N chunks
separately, not one that normalizes over all B.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from hpcsgd.comm import build_backend
from hpcsgd.comm.reducer import BlockingReducer, broadcast_state_

GLOBAL_BATCH, STEPS = 32, 5


def _model(bn: bool):
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3)] + ([nn.BatchNorm2d(4)] if bn else []) + \
             [nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)]
    return nn.Sequential(*layers)


def _data():
    g = torch.Generator().manual_seed(42)
    x = torch.randn(STEPS * GLOBAL_BATCH, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (STEPS * GLOBAL_BATCH,), generator=g)
    return x, y


def _optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)


def _distributed_run(world, bn):
    model = _model(bn)
    backend = build_backend("mpi", world)
    broadcast_state_(model, backend)
    opt = _optimizer(model)
    reducer = BlockingReducer(model, backend, world_size=world.size, bucket_mb=1e-4)
    x, y = _data()
    b = GLOBAL_BATCH // world.size
    for k in range(STEPS):
        lo = k * GLOBAL_BATCH + world.rank * b
        F.cross_entropy(model(x[lo:lo + b]), y[lo:lo + b]).backward()
        reducer.synchronize()
        opt.step()
        opt.zero_grad()
    return model


def _reference_run(chunks: int, bn: bool):
    """One process, batch B; the forward pass sees the batch as `chunks` separate pieces."""
    model = _model(bn)
    opt = _optimizer(model)
    x, y = _data()
    for k in range(STEPS):
        xb = x[k * GLOBAL_BATCH:(k + 1) * GLOBAL_BATCH].chunk(chunks)
        yb = y[k * GLOBAL_BATCH:(k + 1) * GLOBAL_BATCH].chunk(chunks)
        loss = sum(F.cross_entropy(model(xi), yi) for xi, yi in zip(xb, yb)) / chunks
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model


def _assert_same_params(a, b):
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_n_ranks_with_batch_b_over_n_equal_one_rank_with_batch_b(world):
    assert GLOBAL_BATCH % world.size == 0
    _assert_same_params(_distributed_run(world, bn=False), _reference_run(1, bn=False))


def test_with_batchnorm_the_difference_is_per_rank_batch_statistics(world):
    dist = _distributed_run(world, bn=True)
    _assert_same_params(dist, _reference_run(world.size, bn=True))
    if world.size > 1:  # normalizing over the full batch instead is a different computation
        full = _reference_run(1, bn=True)
        diff = max((a - b).abs().max().item() for a, b in zip(dist.parameters(), full.parameters()))
        assert diff > 1e-4
