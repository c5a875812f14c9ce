"""The gradient reducers and the replica helpers, checked against exact arithmetic at any
world size (plain pytest = 1 rank; tools/test.sh runs them again under mpiexec -n 4)."""
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hpcsgd.comm import build_backend, build_reducer
from hpcsgd.comm.hierarchical import HierarchicalAllreduce
from hpcsgd.comm.mpi import MPIBackend
from hpcsgd.comm.reducer import (BlockingReducer, GradientReducer, average_buffers_, broadcast_state_,
                                 check_consistency, check_replicas)
from hpcsgd.comm.wire import BF16Wire, bf16_sum_error_bound
from hpcsgd.config import CommConfig

EPS32 = 2.0 ** -24


def _model():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 5)).to(memory_format=torch.channels_last)


def _reducer(model, world, **options):
    options.setdefault("stall_timeout_s", 60.0)
    return build_reducer(model, CommConfig(**options), world)


def _rank_grads(model, rank):
    g = torch.Generator().manual_seed(1000 + rank)
    return [torch.randn(p.shape, generator=g) * 10.0 ** (i % 3 - 1)
            for i, p in enumerate(model.parameters())]


def _assert_average(model, world, all_grads, tol_factor):
    for i, p in enumerate(model.parameters()):
        stack = torch.stack([g[i].double() for g in all_grads])
        mean, mean_abs = stack.mean(0), stack.abs().mean(0)
        err = (p.grad.double() - mean).abs()
        assert torch.all(err <= tol_factor * mean_abs + 1e-30), \
            f"parameter {i}: error {err.max():.3g} above the bound"


@pytest.mark.parametrize("options", [
    {"bucket_mb": 1e-4, "hierarchical": "off"}, {"bucket_mb": 25.0},
    {"bucket_mb": 1e-4, "overlap": False}, {"bucket_mb": 1e-3, "hierarchical": "on"},
    {"bucket_mb": 1e-3, "backend": "gloo"},
], ids=["flat-small-buckets", "one-bucket", "blocking", "hierarchical", "gloo"])
def test_reduced_gradients_are_the_average(world, options):
    torch.manual_seed(0)
    model = _model()
    broadcast_state_(model, build_backend("mpi", world))
    reducer = _reducer(model, world, **options)
    all_grads = [_rank_grads(model, r) for r in range(world.size)]
    for p, g in zip(model.parameters(), all_grads[world.rank]):
        p.grad = g.clone().contiguous(memory_format=torch.preserve_format)
    reducer.synchronize()
    # the fp32 sum of the g_r, then / N: |error| <= (N + 1) * 2^-24 * mean|g_r|
    _assert_average(model, world, all_grads, (world.size + 1) * EPS32)
    check_replicas(model, world)  # and every rank holds the same bits
    reducer.close()


def _hierarchical(reducer):
    (h,) = [c for c in reducer._closers if isinstance(c, HierarchicalAllreduce)]
    return h


def _in(t, area) -> bool:
    base = area.ctypes.data
    return base <= t.data_ptr() and t.data_ptr() + 4 * t.numel() <= base + 4 * area.size


@pytest.mark.parametrize("overlap", [True, False])
def test_read_only_gradients_are_the_nodes_shared_average(world, overlap):
    """gradients_read_only + hierarchical: p.grad is the node's one shared copy of the average
    (no rank copies it back into its slot), every bucket's at once, and it stays valid while
    the other ranks go on to the next step's reduction; zero_grad() gives the slots back; a
    second step is exact again; close() leaves private copies."""
    torch.manual_seed(0)
    model = _model()
    broadcast_state_(model, build_backend("mpi", world))
    reducer = build_reducer(model, CommConfig(bucket_mb=1e-3, hierarchical="on", overlap=overlap,
                                              stall_timeout_s=60.0),
                            world, gradients_read_only=True)
    assert len(reducer.buckets) > 1
    results = _hierarchical(reducer).arena.result
    slots = {v.data_ptr() for b in reducer.buckets for v in b.views}
    for step in range(2):
        all_grads = [[g * (step + 1) for g in _rank_grads(model, r)] for r in range(world.size)]
        for p, g in zip(model.parameters(), all_grads[world.rank]):
            if p.grad is None:
                p.grad = g.clone().contiguous(memory_format=torch.preserve_format)
            else:  # backward accumulating into the zeroed slot
                p.grad.add_(g)
        reducer.synchronize()
        if world.rank == 0:
            time.sleep(0.3)  # the others start the next step's reduction meanwhile
        assert all(p.grad.data_ptr() not in slots and _in(p.grad, results)
                   for p in model.parameters())
        _assert_average(model, world, all_grads, (world.size + 1) * EPS32)
        for b in reducer.buckets:  # this rank's own contribution is still in its slots
            for p, v in zip(b.params, b.views):
                i = next(k for k, q in enumerate(model.parameters()) if q is p)
                torch.testing.assert_close(v, all_grads[world.rank][i], rtol=0, atol=0)
        reducer.zero_grad()
        assert all(p.grad.data_ptr() in slots and not p.grad.any() for p in model.parameters())
    for p, g in zip(model.parameters(), all_grads[world.rank]):
        p.grad.add_(g)
    reducer.synchronize()
    check_replicas(model, world)
    averaged = [p.grad.clone() for p in model.parameters()]
    reducer.close()
    for p, a in zip(model.parameters(), averaged):
        assert p.grad.data_ptr() not in slots
        torch.testing.assert_close(p.grad, a, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="after close"):
        reducer.zero_grad()


def test_accumulating_into_the_shared_average_is_refused(world):
    """Backward after synchronize() without reducer.zero_grad() would add into the memory
    every rank of the node reads: refused, naming the parameter."""
    model = _model()
    reducer = build_reducer(model, CommConfig(bucket_mb=1e-3, hierarchical="on",
                                              stall_timeout_s=60.0),
                            world, gradients_read_only=True)
    x = torch.randn(2, 3, 8, 8)
    F.cross_entropy(model(x), torch.arange(2)).backward()
    reducer.synchronize()
    with pytest.raises(RuntimeError, match="accumulated into the node's shared average"):
        F.cross_entropy(model(x), torch.arange(2)).backward()
    reducer.close()


@pytest.mark.parametrize("wire", ["float32", "bfloat16"])
def test_shared_average_over_nodes_of_two_ranks(world, wire):
    """Several "nodes" (the world split in pairs): the node sum divided by the world size,
    then the leaders' sum (fp32, or bf16 on the wire), shared by the node's ranks."""
    node = world.comm.Split(world.rank // 2, key=world.rank)
    nodes = (world.size + 1) // 2

    def inter(leaders):
        backend = MPIBackend(leaders, arrival_poll_s=1e-4)
        return BF16Wire(backend) if wire == "bfloat16" else backend

    h = HierarchicalAllreduce(world.comm, node, inter, arrival_poll_s=1e-4)
    torch.manual_seed(0)
    model = _model()
    reducer = GradientReducer(model, h.allreduce_sum_, world_size=world.size,
                              bucket_bytes=1000, closers=[h], buffers=h.buffers,
                              average_=h.average_, gradients_read_only=True)
    tol = (world.size + 2) * EPS32
    if wire == "bfloat16":  # rounded to bf16 around the leaders' sum (hpcsgd/comm/wire.py)
        tol += bf16_sum_error_bound(torch.tensor(1.0), nodes).item() * (1 + 2.0 ** -20)
    for step in range(3):
        all_grads = [[g * (step + 1) for g in _rank_grads(model, r)] for r in range(world.size)]
        for p, g in zip(model.parameters(), all_grads[world.rank]):
            if p.grad is None:
                p.grad = g.clone().contiguous(memory_format=torch.preserve_format)
            else:
                p.grad.add_(g)
        reducer.synchronize()
        if world.rank == world.size - 1:
            time.sleep(0.2)
        assert all(_in(p.grad, h.arena.result) for p in model.parameters())
        _assert_average(model, world, all_grads, tol)
        check_replicas(model, world)
        reducer.zero_grad()
    reducer.close()
    node.Free()


def test_power_of_two_world_with_small_integers_is_exact(world):
    # rank r's gradient = (r + 1) * g0: the average is g0 * (N + 1) / 2, exact in fp32 when
    # dividing by N is exact
    model = _model()
    reducer = _reducer(model, world, bucket_mb=1e-4)
    g0 = [torch.randint(-8, 8, p.shape).float() for p in model.parameters()]
    g0 = [world.comm.bcast(g, root=0) for g in g0]
    for p, g in zip(model.parameters(), g0):
        p.grad = g * (world.rank + 1)
    reducer.synchronize()
    if world.size & (world.size - 1) == 0:
        for p, g in zip(model.parameters(), g0):
            torch.testing.assert_close(p.grad, g * (world.size + 1) / 2, rtol=0, atol=0)
    reducer.close()


def test_overlapped_reduction_during_backward_matches_the_blocking_one(world):
    torch.manual_seed(0)
    a, b = _model(), _model()
    b.load_state_dict(a.state_dict())
    overlapped, blocking = _reducer(a, world, bucket_mb=1e-3, hierarchical="off"), \
        BlockingReducer(b, build_backend("mpi", world), world_size=world.size, bucket_mb=1e-3)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(world.rank))
    for model, reducer in ((a, overlapped), (b, blocking)):
        F.cross_entropy(model(x), torch.arange(4) % 5).backward()
        reducer.synchronize()
    assert overlapped.steps == 1 and len(overlapped.buckets) > 1
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=0, atol=0)
    overlapped.close()


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("zero", ["reducer", "optimizer"])
def test_accumulation_equals_one_large_batch(world, overlap, zero):
    """iter_size micro-batches under no_sync, reduced once, equal the gradient of the whole
    global batch computed on one rank."""
    accum, local = 3, 2
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 3))
    reference = nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 3))
    reference.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(7)
    n = world.size * accum * local
    x, y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
    reducer = _reducer(model, world, bucket_mb=1e-4, overlap=overlap)
    for step in range(2):  # the second step checks that state is reset between steps
        mine = torch.arange(n).view(world.size, accum, local)[world.rank]
        for micro in range(accum):
            last = micro == accum - 1
            idx = mine[micro]
            loss = F.cross_entropy(model(x[idx]), y[idx]) / accum
            if last:
                loss.backward()
            else:
                with reducer.no_sync():
                    loss.backward()
        reducer.synchronize()
        F.cross_entropy(reference(x), y).backward()  # mean over the global batch
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)
        slots = {v.data_ptr() for b in reducer.buckets for v in b.views}
        if zero == "reducer":  # gradients stay the bucket slots: backward accumulates there
            reducer.zero_grad()
            assert all(p.grad.data_ptr() in slots and not p.grad.any()
                       for p in model.parameters())
        else:
            model.zero_grad(set_to_none=step == 0)  # both ways of clearing gradients
        reference.zero_grad()
    reducer.close()


def test_bf16_wire_stays_within_its_documented_error(world):
    from hpcsgd.comm.wire import BF16_UNIT_ROUNDOFF as u
    model = _model()
    # flat: with comm.hierarchical on, bf16 only travels between nodes (none on one machine)
    reducer = _reducer(model, world, bucket_mb=1e-3, wire_dtype="bfloat16", hierarchical="off")
    all_grads = [_rank_grads(model, r) for r in range(world.size)]
    for p, g in zip(model.parameters(), all_grads[world.rank]):
        p.grad = g.clone()
    reducer.synchronize()
    # hpcsgd/comm/wire.py: (2u + u^2 + N 2^-24 (1+u)^2) relative to sum|x_r|, x_r = g_r / N
    # (itself rounded once more: + 2^-24)
    _assert_average(model, world, all_grads,
                    2 * u + u * u + (world.size + 1) * EPS32 * (1 + u) ** 2)
    if world.size > 1:  # on the wire the values were rounded to bf16: low 16 bits are zero
        for p in model.parameters():
            assert torch.all(p.grad.contiguous().view(torch.int32) & 0xFFFF == 0)
    check_replicas(model, world)
    reducer.close()


def test_misuse_fails_loudly(world):
    model = nn.Linear(3, 2)
    reducer = _reducer(model, world, bucket_mb=1e-4)
    model(torch.ones(1, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="produced twice before synchronize"):
        model(torch.ones(1, 3)).sum().backward()
    reducer.synchronize()
    with pytest.raises(RuntimeError, match="inside no_sync"):
        with reducer.no_sync():
            reducer.synchronize()
    reducer.close()


def test_unused_parameters_count_as_zero_on_every_rank(world):
    model = nn.ModuleDict({"used": nn.Linear(3, 2), "unused": nn.Linear(3, 2)})
    reducer = _reducer(model, world, bucket_mb=1e-4)
    model["used"](torch.ones(1, 3)).sum().backward()
    reducer.synchronize()
    assert torch.all(model["unused"].weight.grad == 0)
    torch.testing.assert_close(model["used"].weight.grad, torch.ones(2, 3))
    reducer.close()


def test_broadcast_makes_replicas_identical_and_checks_name_a_diverged_rank(world):
    torch.manual_seed(world.rank)  # different initial weights on every rank
    model = _model()
    backend = build_backend("mpi", world)
    broadcast_state_(model, backend)
    check_replicas(model, world)  # identical now: must not raise
    check_consistency(model, world, step=0)
    if world.size > 1:
        culprit = world.size - 1
        if world.rank == culprit:
            with torch.no_grad():
                model[3].bias[0].add_(1e-6)
        with pytest.raises(RuntimeError, match=rf"ranks \[{culprit}\] differ"):
            check_replicas(model, world)
        with pytest.raises(RuntimeError, match=rf"at step 5: weights of ranks \[{culprit}\] "
                                               r"differ .*first differing parameter: 3.bias"):
            check_consistency(model, world, step=5)


def test_average_buffers_averages_batchnorm_statistics(world):
    model = _model()
    backend = build_backend("mpi", world)
    bn = model[1]
    bn.running_mean.fill_(float(world.rank))
    average_buffers_(model, backend, world.size)
    assert torch.all(bn.running_mean == (world.size - 1) / 2)
    assert bn.num_batches_tracked.dtype == torch.int64  # integer buffers left alone


@pytest.mark.parametrize("overlap", [True, False])
def test_a_parameter_unfrozen_after_the_reducer_was_built_is_refused_by_name(world, overlap):
    # it would never be averaged: each rank would step it with its own gradient, silently,
    # until the final replica check
    torch.manual_seed(0)
    model = _model()
    frozen = model[0].weight
    frozen.requires_grad_(False)
    reducer = _reducer(model, world, overlap=overlap, bucket_mb=1e-3)
    try:
        frozen.requires_grad_(True)
        F.mse_loss(model(torch.randn(4, 3, 8, 8)), torch.randn(4, 5)).backward()
        with pytest.raises(RuntimeError,
                           match=r"'0\.weight' has requires_grad = True but was frozen"):
            reducer.synchronize()
    finally:
        reducer.close()
