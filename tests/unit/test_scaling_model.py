"""Cost models, iteration time and time to train (hpcsgd.scaling): pure functions, no MPI."""
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from hpcsgd.scaling.allreduce import (Cost, Link, allreduce, halving_doubling, hierarchical, ring,
                                      ring_bytes)
from hpcsgd.scaling.calibration import calibrated_clusters
from hpcsgd.scaling.hardware import RESNET50_GRAD_BYTES, fit_rate, hpcsgd_software
from hpcsgd.scaling.model import (BACKWARD_SHARE, compute_seconds, epoch_seconds, eval_seconds,
                                  exposed_seconds, iteration, iterations_per_epoch,
                                  scaleout_seconds, time_to_train)
from hpcsgd.scaling.paper import TABLE_IX, TABLE_V

LINK = Link(alpha=2e-6, beta=1e-10, gamma=1e-11)
N = 100e6


@pytest.fixture(scope="module")
def knl():
    return calibrated_clusters()["knl-7250"]


# ---------------------------------------------------------------- allreduce cost models

@pytest.mark.parametrize("algo", [ring, halving_doubling])
def test_one_rank_costs_nothing(algo):
    assert algo(N, 1, LINK) == Cost()


def test_one_rank_costs_nothing_in_every_algorithm():
    for name in ("ring", "halving_doubling", "hierarchical"):
        assert allreduce(N, 1, 1, algorithm=name, inter=LINK, intra=LINK).total == 0.0
    assert hierarchical(N, 1, 1, intra=LINK, inter=LINK) == Cost()


def test_ring_bandwidth_term_tends_to_twice_the_message():
    assert ring_bytes(N, 2) == N                                 # p = 2: send half, twice
    assert ring_bytes(N, 1_000_000) == pytest.approx(2 * N, rel=1e-5)
    sizes = [ring_bytes(N, p) for p in (2, 4, 16, 256, 4096)]
    assert sizes == sorted(sizes) and all(s < 2 * N for s in sizes)
    assert ring(N, 4096, LINK).bandwidth == pytest.approx(2 * N * LINK.beta, rel=1e-3)


def test_ring_latency_is_linear_and_halving_doubling_logarithmic():
    assert ring(N, 64, LINK).latency == pytest.approx(2 * 63 * LINK.alpha)
    assert halving_doubling(N, 64, LINK).latency == pytest.approx(2 * 6 * LINK.alpha)
    # same bandwidth and reduction terms for powers of two (both are bandwidth optimal)
    assert halving_doubling(N, 64, LINK).bandwidth == pytest.approx(ring(N, 64, LINK).bandwidth)
    assert halving_doubling(N, 64, LINK).reduction == pytest.approx(ring(N, 64, LINK).reduction)


def test_halving_doubling_pays_the_fold_for_non_powers_of_two():
    p2, odd = halving_doubling(N, 1024, LINK), halving_doubling(N, 1536, LINK)
    assert odd.latency == pytest.approx(p2.latency + 2 * LINK.alpha)
    assert odd.bandwidth == pytest.approx(p2.bandwidth + 2 * N * LINK.beta)


def test_hierarchical_limits():
    intra = Link(alpha=1e-7, beta=1e-11)
    # one rank per node: just the inter-node algorithm
    assert hierarchical(N, 64, 1, intra=intra, inter=LINK) == halving_doubling(N, 64, LINK)
    # one node: just the shared-memory ring
    assert hierarchical(N, 1, 8, intra=intra, inter=LINK) == ring(N, 8, intra)
    # the NIC carries the full vector whatever ppn is: same inter-node bandwidth term
    across = [hierarchical(N, 64, ppn, intra=Link(0, 0), inter=LINK).bandwidth
              for ppn in (1, 2, 4)]
    assert across == pytest.approx([across[0]] * 3)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="ranks"):
        ring(N, 0, LINK)
    with pytest.raises(ValueError, match="alpha"):
        Link(alpha=-1, beta=0)
    with pytest.raises(ValueError, match="algorithm"):
        allreduce(N, 4, 1, algorithm="tree", inter=LINK, intra=LINK)


# ---------------------------------------------------------------- iteration model

def test_exposed_communication_limits():
    tau, n = 0.01, 4
    assert exposed_seconds(tau, n, backward=1.0, overlap=0.0) == pytest.approx(n * tau)
    assert exposed_seconds(tau, n, backward=1.0, overlap=1.0) == pytest.approx(tau)  # last one
    # a network slower than backward: the queue minus what ran under backward
    assert exposed_seconds(1.0, n, backward=1.0, overlap=1.0) == pytest.approx(4 - 0.75)
    values = [exposed_seconds(0.1, n, 1.0, w) for w in (0.0, 0.25, 0.5, 1.0)]
    assert values == sorted(values, reverse=True)
    assert exposed_seconds(0.0, n, 1.0, 0.0) == 0.0


def test_single_node_iteration_has_no_communication(knl):
    step = iteration(knl, 32, 1)
    assert step.comm == 0.0 and step.scaleout == 0.0
    assert step.total == pytest.approx(step.compute + step.update + step.data)


def test_compute_is_affine_in_the_batch(knl):
    r, b0 = knl.node.images_per_s, knl.node.batch_overhead_images
    assert compute_seconds(knl.node, 32) == pytest.approx((32 + b0) / r)
    # two ranks on a node share it: each is half as fast
    assert compute_seconds(knl.node, 16, 2) == pytest.approx(2 * (16 + b0) / r)
    slope = compute_seconds(knl.node, 32) - compute_seconds(knl.node, 16)
    assert compute_seconds(knl.node, 24) - compute_seconds(knl.node, 16) == pytest.approx(slope / 2)


def test_scaleout_is_zero_up_to_the_knee():
    assert scaleout_seconds(256, 0.04, 256) == 0.0
    assert scaleout_seconds(64, 0.04, 256) == 0.0
    assert scaleout_seconds(1024, 0.04, 256) == pytest.approx(0.08)


def test_time_to_train_is_steps_times_iteration_plus_evaluation(knl):
    t = time_to_train(knl, nodes=1536, ranks_per_node=1, local_batch=32, epochs=100,
                      evaluations=0)
    assert t["total_s"] == pytest.approx(100 * epoch_seconds(knl, 32, 1536))
    assert t["epoch_s"] == pytest.approx(iterations_per_epoch(32, 1536) * t["iteration"]["total"])
    by_steps = time_to_train(knl, nodes=1536, ranks_per_node=1, local_batch=32, iterations=2600,
                             evaluations=3)
    assert by_steps["train_s"] == pytest.approx(2600 * by_steps["iteration"]["total"])
    assert by_steps["eval_s"] == pytest.approx(3 * eval_seconds(knl, 1536, 1, 32))
    # forward only: one third of a training step per validation batch
    assert eval_seconds(knl, 1536, 1, 32) == pytest.approx(
        2 * (1 - BACKWARD_SHARE) * compute_seconds(knl.node, 32))  # 50000 / 49152 -> 2 steps
    with pytest.raises(ValueError, match="exactly one"):
        time_to_train(knl, nodes=2, ranks_per_node=1, local_batch=32)


def test_hpcsgd_buckets_and_overlap():
    sw = hpcsgd_software(bucket_mb=25.0)
    assert sw.messages == math.ceil(RESNET50_GRAD_BYTES / (25 * 2**20)) == 4
    with pytest.raises(ValueError, match="overlap"):
        hpcsgd_software(overlap=1.5)


def test_fit_rate_recovers_an_affine_step_time():
    r, b0 = 7.0, 3.0
    batches = [4, 8, 16, 32]
    assert fit_rate(batches, [(b + b0) / r for b in batches]) == pytest.approx((r, b0))
    assert fit_rate([32], [4.0]) == (8.0, 0.0)  # one point: no fixed cost can be seen
    with pytest.raises(ValueError, match="grow"):
        fit_rate([4, 8], [2.0, 1.0])


# ---------------------------------------------------------------- the issue's targets

def test_table_v_errors_meet_the_issue_target(knl):
    errors = [abs(epoch_seconds(knl, r.local_batch, r.nodes) / r.seconds - 1) for r in TABLE_V]
    assert statistics.median(errors) <= 0.05
    assert max(errors) <= 0.10


def test_table_ix_predictions(knl):
    for row in TABLE_IX:
        if row.global_batch in (32768, 49152):
            t = time_to_train(knl, nodes=row.nodes, ranks_per_node=1,
                              local_batch=row.local_batch, epochs=row.epochs, evaluations=0)
            assert t["total_s"] / 60 == pytest.approx(row.minutes, rel=0.10)


def test_the_model_imports_without_torch_or_mpi():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['mpi4py'] = None; "
            "import hpcsgd.scaling.document, hpcsgd.scaling.jobs, hpcsgd.scaling.projection")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_required_compute_leaves_exactly_the_target(knl):
    from hpcsgd.scaling.projection import required_compute

    sw = hpcsgd_software(overlap=1.0)
    for per_message in (0.001, 0.02, 0.1):
        c = required_compute(0.6, per_message, sw, fixed=0.05)
        exposed = exposed_seconds(per_message, sw.messages, BACKWARD_SHARE * c, sw.overlap)
        assert c + exposed + 0.05 == pytest.approx(0.6)
    # communication alone over budget: no compute time is left
    assert required_compute(0.6, 0.2, sw, fixed=0.05) <= 0
