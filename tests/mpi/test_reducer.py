"""The blocking reducer and the replica helpers, checked against exact arithmetic."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from hpcsgd.comm import build_backend
from hpcsgd.comm.reducer import (BlockingReducer, average_buffers_, broadcast_state_,
                                 check_replicas, make_buckets)


def _model():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 5)).to(memory_format=torch.channels_last)


def test_make_buckets_respects_size_and_order():
    params = [nn.Parameter(torch.zeros(n)) for n in (10, 10, 30, 5, 1)]
    buckets = make_buckets(params, bucket_bytes=80)  # 20 floats
    assert [[p.numel() for p in b] for b in buckets] == [[10, 10], [30], [5, 1]]


@pytest.mark.parametrize("bucket_mb", [1e-4, 25.0])  # many small buckets, one big bucket
def test_reduced_gradients_are_the_exact_average(world, bucket_mb):
    torch.manual_seed(0)
    model = _model()
    backend = build_backend("mpi", world)
    broadcast_state_(model, backend)
    # rank r's gradient = (r + 1) * g0, so the average is g0 * (size + 1) / 2 exactly in fp32
    g0 = [torch.randint(-8, 8, p.shape).float() for p in model.parameters()]
    for p, g in zip(model.parameters(), g0):
        p.grad = (g * (world.rank + 1)).contiguous(memory_format=torch.preserve_format)
    BlockingReducer(model, backend, world_size=world.size, bucket_mb=bucket_mb).synchronize()
    for p, g in zip(model.parameters(), g0):
        torch.testing.assert_close(p.grad, g * (world.size + 1) / 2, rtol=0, atol=0)


def test_broadcast_makes_replicas_identical_and_check_names_a_diverged_rank(world):
    torch.manual_seed(world.rank)  # different initial weights on every rank
    model = _model()
    backend = build_backend("mpi", world)
    broadcast_state_(model, backend)
    check_replicas(model, world)  # identical now: must not raise
    if world.size > 1:
        culprit = world.size - 1
        if world.rank == culprit:
            with torch.no_grad():
                next(model.parameters())[0].add_(1e-6)
        with pytest.raises(RuntimeError, match=rf"ranks \[{culprit}\] differ"):
            check_replicas(model, world)


def test_average_buffers_averages_batchnorm_statistics(world):
    model = _model()
    backend = build_backend("mpi", world)
    bn = model[1]
    bn.running_mean.fill_(float(world.rank))
    average_buffers_(model, backend, world.size)
    assert torch.all(bn.running_mean == (world.size - 1) / 2)
    assert bn.num_batches_tracked.dtype == torch.int64  # integer buffers left alone
