"""The communication engine's pure parts and threads, without other ranks: bucket layout,
segments and chunks, the bf16 rounding bound, the stall report, the communication thread's
ordering, error hand-off and core pinning, and the [comm] config checks."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from hpcsgd.comm.buckets import Bucket, flat_view, make_buckets
from hpcsgd.comm.engine import CommEngine
from hpcsgd.comm.hierarchical import segment
from hpcsgd.comm.watchdog import stall_report
from hpcsgd.comm.wire import bf16_sum_error_bound, chunk_elems
from hpcsgd.config import CommConfig, Config, ConfigError, validate


def test_make_buckets_respects_size_and_order():
    params = [nn.Parameter(torch.zeros(n)) for n in (10, 10, 30, 5, 1)]
    buckets = make_buckets(params, bucket_bytes=80)  # 20 floats
    assert [[p.numel() for p in b] for b in buckets] == [[10, 10], [30], [5, 1]]


def test_bucket_slots_are_strided_like_the_parameters_and_are_the_gradients():
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    params = [conv.weight, conv.bias]
    bucket = Bucket(0, params)
    assert bucket.views[0].stride() == conv.weight.stride()  # channels_last slot
    assert bucket.numel == conv.weight.numel() + conv.bias.numel()
    g = torch.randn_like(conv.weight)
    bucket.fill_(0, g)
    bucket.fill_(1, None)  # an unused parameter contributes zeros
    assert bucket.complete
    torch.testing.assert_close(bucket.views[0], g, rtol=0, atol=0)
    assert torch.all(bucket.views[1] == 0)
    bucket.publish_()
    assert conv.weight.grad.data_ptr() == bucket.views[0].data_ptr()  # no copy back
    bucket.reset()
    conv.weight.grad.mul_(3)  # accumulated in place, as backward does into a slot .grad
    bucket.fill_(0, conv.weight.grad)  # .grad is the slot: nothing to copy
    torch.testing.assert_close(bucket.views[0], 3 * g, rtol=0, atol=0)


def test_flat_view_follows_memory_order_and_refuses_gaps():
    t = torch.arange(24.).reshape(1, 2, 3, 4).contiguous(memory_format=torch.channels_last)
    assert flat_view(t).data_ptr() == t.data_ptr() and flat_view(t).numel() == 24
    with pytest.raises(ValueError, match="dense"):
        flat_view(torch.zeros(4, 4)[:, ::2])


@pytest.mark.parametrize("n, parts", [(10, 3), (3, 4), (0, 2), (25_557_032, 4)])
def test_segments_tile_the_buffer(n, parts):
    bounds = [segment(n, parts, i) for i in range(parts)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1


def test_chunks_cover_the_buffer():
    assert chunk_elems(10, 4) == 3 and chunk_elems(8, 4) == 2 and chunk_elems(0, 4) == 0


def test_bf16_bound_holds_for_a_simulated_wire_sum_and_is_tight():
    # the wire's arithmetic for 4 ranks in one process: round inputs, sum in fp32, round
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(100_000, generator=g) * 10 ** (r - 2) for r in range(4)]
    exact = sum(x.double() for x in xs)
    acc = xs[0].bfloat16().float()
    for x in xs[1:]:
        acc += x.bfloat16().float()
    result = acc.bfloat16().double()
    bound = bf16_sum_error_bound(sum(x.abs().double() for x in xs), 4)
    err = (result - exact).abs()
    assert torch.all(err <= bound)
    assert err.max() > bound.max() * 1e-3  # bf16 really happened: errors far above fp32's


def test_stall_report_names_lagging_silent_and_disagreeing_ranks():
    replies = {0: (7, "step 3 bucket 2/4", True, 9.0), 1: (6, "step 3 bucket 1/4", False, 9.5),
               3: (7, "step 3 bucket 1/4", True, 8.0)}
    text, lagging, silent = stall_report(2, 5, 7, "step 3 bucket 2/4", 10.0, replies)
    assert lagging == [1] and silent == [4]
    assert "collective #7 (step 3 bucket 2/4) has not completed after 10.0 s" in text
    assert "rank 1: last collective entered #6 (step 3 bucket 1/4), finished 9.5 s ago" in text
    assert "ranks disagree on collective #7" in text
    assert "aborting all 5 ranks" in text


def test_engine_runs_jobs_in_order_and_hands_errors_to_the_waiter():
    engine = CommEngine()
    try:
        seen = []
        handles = [engine.submit(seen.append, i, label=f"job {i}") for i in range(20)]
        for h in handles:
            h.wait()
        assert seen == list(range(20))
        assert engine.progress.state[0] == 20 and not engine.progress.state[2]
        assert engine.call(threading.get_native_id) == engine.native_id != threading.get_native_id()
        with pytest.raises(RuntimeError, match="communication job 'boom' failed: ZeroDivision"):
            engine.submit(lambda: 1 / 0, label="boom").wait()
    finally:
        engine.close()


def test_engine_thread_is_pinned_to_the_communication_cores():
    last = max(os.sched_getaffinity(0))
    engine = CommEngine([last])
    try:
        assert os.sched_getaffinity(engine.native_id) == {last}
        assert last in os.sched_getaffinity(0)  # the calling thread keeps its cores
    finally:
        engine.close()


ENGINE_THREADS = r"""
import ctypes, json, os, sys, torch
from hpcsgd.affinity.openmp import loaded_runtime
from hpcsgd.comm.engine import CommEngine
torch.set_num_threads(2)
if sys.argv[1] == "warm":
    torch.randn(4_000_000).mul_(1.5)  # the main thread's team exists before the engine
engine = CommEngine()
threads = len(os.listdir("/proc/self/task"))
y = torch.randn(4_000_000)
a = torch.randn(512, 512)
engine.call(lambda: [y.mul_(1.5), y.to(torch.bfloat16).float().sum(), a @ a])  # OpenMP, MKL
out = {"new_threads": len(os.listdir("/proc/self/task")) - threads,
       "engine": engine.call(ctypes.CDLL(loaded_runtime()[0]).omp_get_max_threads),
       "engine_torch": engine.call(torch.get_num_threads)}
torch.randn(4_000_000).mul_(1.5)
out["main"] = torch.get_num_threads()
engine.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("main_first", ["warm", "cold"])
def test_torch_ops_on_the_engine_thread_start_no_openmp_team(main_first):
    """The bf16 wire runs torch ops on the communication thread: they must not start an
    OpenMP team there (threads spinning on the communication cores), and the compute
    threads' team size must stay what it was, also when the main thread has not run a
    parallel op yet (torch adopts a process-wide count lazily). Fresh processes."""
    res = subprocess.run([sys.executable, "-c", ENGINE_THREADS, main_first],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"new_threads": 0, "engine": 1, "engine_torch": 1, "main": 2}


def test_engine_refuses_cores_outside_the_machine():
    with pytest.raises(ValueError, match=r"comm.comm_cores = \[100000\]"):
        CommEngine([100000])


@pytest.mark.parametrize("options, message", [
    ({"wire_dtype": "float16"}, "comm.wire_dtype = 'float16'"),
    ({"hierarchical": "on", "backend": "gloo"}, "comm.hierarchical = 'on': needs comm.backend"),
    ({"hierarchical": "yes"}, "comm.hierarchical = 'yes': must be one of 'auto', 'on', 'off'"),
    ({"comm_cores": [3, 3]}, "lists a core twice"),
    ({"stall_timeout_s": -1.0}, "comm.stall_timeout_s = -1.0"),
    ({"backend": "nccl"}, "comm.backend = 'nccl': must be one of 'mpi', 'gloo', 'ccl'"),
])
def test_comm_config_refuses_bad_options(options, message):
    cfg = Config()
    cfg.comm = CommConfig(**options)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        validate(cfg)


def test_ccl_is_refused_by_name_when_its_bindings_are_missing():
    from hpcsgd.comm.torchdist import ccl_available
    if ccl_available():
        pytest.skip("this machine has the oneCCL bindings")
    with pytest.raises(ConfigError, match="oneccl_bindings_for_pytorch"):
        CommConfig(backend="ccl").check()


def test_a_library_without_thread_multiple_is_refused_clearly(monkeypatch):
    from mpi4py import MPI

    from hpcsgd.comm import require_thread_multiple
    require_thread_multiple()  # this environment's MPICH grants MPI_THREAD_MULTIPLE
    monkeypatch.setattr(MPI, "Query_thread", lambda: MPI.THREAD_SERIALIZED)
    with pytest.raises(RuntimeError, match="granted MPI_THREAD_SERIALIZED.*comm.overlap = false"):
        require_thread_multiple()


def test_engine_priority_boost_lowers_only_the_communication_threads_nice_value():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        engine = CommEngine(priority_boost=3)
    except ValueError as e:  # not permitted here: refused with the option named
        assert "comm.priority_boost = 3" in str(e)
        return
    try:
        assert os.getpriority(os.PRIO_PROCESS, engine.native_id) == max(-20, base - 3)
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the caller keeps its own
    finally:
        engine.close()
