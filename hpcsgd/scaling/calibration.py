"""Calibration: which published rows set which parameters, and nothing else.

Stampede2 (KNL 7250): three unknowns, the node's ResNet-50 rate r, its fixed cost B0 (in
images) and the scale-out slope s (seconds per doubling of the nodes past 256), from three
Table V rows:

    (16, 256) and (32, 256)  the two local batches at the smallest scale: r and B0;
    (16, 1024)               the largest scale at that batch: s.

The other seven rows, every local-batch-32 row past 256 nodes, the whole 512-node batch
sweep and 768 nodes, are predictions. The knee (256 nodes) comes from the paper's text
(">97%" from 1 to 256 nodes), not from a fit.

MareNostrum 4 (Skylake 8160): one unknown, r, from Table VI's 512-CPU row only. B0, the
scale-out slope and knee are carried over from Stampede2 (same Intel Caffe + ML-SL on the
same Omni-Path); the network and memory are spec-sheet values.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from hpcsgd.scaling.allreduce import allreduce
from hpcsgd.scaling.hardware import (INTEL_CAFFE_MLSL, KNL_7250, OPA_MN4, OPA_STAMPEDE2,
                                     RESNET50_GRAD_BYTES, SKX_8160_2S, Cluster, update_seconds)
from hpcsgd.scaling.model import BACKWARD_SHARE, IMAGENET_TRAIN_IMAGES, exposed_seconds
from hpcsgd.scaling.paper import TABLE_V, TABLE_VI, EpochRow

STAMPEDE2_CALIBRATION = ((16, 256), (32, 256), (16, 1024))  # (local batch, nodes)
MN4_CALIBRATION_CPUS = 512


def iteration_seconds(row: EpochRow) -> float:
    """Published seconds per epoch -> seconds per iteration (one rank per node)."""
    return row.seconds * row.local_batch * row.nodes / IMAGENET_TRAIN_IMAGES


def _modelled_overheads(cluster: Cluster, row: EpochRow, compute: float) -> float:
    """Spec-sheet communication, update and data time of a row, given its compute time."""
    net, sw = cluster.network, cluster.software
    per_message = allreduce(RESNET50_GRAD_BYTES / sw.messages, row.nodes, 1,
                            algorithm=net.algorithm, inter=net.inter, intra=net.intra).total
    comm = exposed_seconds(per_message, sw.messages, BACKWARD_SHARE * compute, sw.overlap)
    return comm + update_seconds(RESNET50_GRAD_BYTES, cluster.node.mem_bw_gbs) + sw.data_s


def exact_least_squares(design: list[list[float]], y: list[float]) -> list[float]:
    """The x minimising ||design x - y||, solved exactly (the normal equations in rational
    arithmetic, Gauss-Jordan) and rounded once: the same bits on every machine. LAPACK's
    lstsq differs in the last bit between CPUs and BLAS builds, which flipped a printed
    digit of docs/scaling.md between machines."""
    if not design or len(design) != len(y):
        raise ValueError(f"least squares: {len(design)} design rows for {len(y)} values")
    if not all(map(math.isfinite, [*y, *(v for r in design for v in r)])):
        raise ValueError(f"least squares: a value is not finite (design {design}, y {y})")
    rows = [[Fraction(v) for v in r] for r in design]
    rhs = [Fraction(v) for v in y]
    n = len(rows[0])
    m = [[sum(r[i] * r[j] for r in rows) for j in range(n)] +
         [sum(r[i] * b for r, b in zip(rows, rhs))] for i in range(n)]
    for c in range(n):
        pivot = next((i for i in range(c, n) if m[i][c] != 0), None)
        if pivot is None:
            raise ValueError(f"least squares: the design has rank < {n} (column {c})")
        m[c], m[pivot] = m[pivot], m[c]
        for i in range(n):
            if i != c and m[i][c] != 0:
                f = m[i][c] / m[c][c]
                m[i] = [a - f * b for a, b in zip(m[i], m[c])]
    return [float(m[i][n] / m[i][i]) for i in range(n)]


def _knee_doublings(nodes: int, knee: int) -> float:
    return max(0.0, math.log2(nodes / knee))


def calibrate_stampede2(rows=TABLE_V, use=STAMPEDE2_CALIBRATION) -> Cluster:
    """Solve t_iter = (B + B0)/r + s * doublings + spec overheads on the `use` rows."""
    cal = [r for r in rows if (r.local_batch, r.nodes) in set(use)]
    if len(cal) < 3:
        raise ValueError(f"need 3 calibration rows for r, B0 and s, got {len(cal)} from {use}")
    base = Cluster("stampede2", KNL_7250, OPA_STAMPEDE2, INTEL_CAFFE_MLSL)
    knee = base.software.scaleout_knee_nodes
    t = [iteration_seconds(r) for r in cal]
    design = [[r.local_batch, 1.0, _knee_doublings(r.nodes, knee)] for r in cal]
    compute = list(t)
    # overheads depend on compute (the overlap window) and are small: a few fixed-point steps
    for _ in range(5):
        y = [ti - _modelled_overheads(base, r, c) for ti, r, c in zip(t, cal, compute)]
        inv_rate, fixed, slope = exact_least_squares(design, y)
        compute = [row[0] * inv_rate + fixed for row in design]
    if inv_rate <= 0:
        raise ValueError(f"calibration gave a non-positive compute rate from rows {use}")
    node = dataclasses.replace(base.node, images_per_s=float(1 / inv_rate),
                               batch_overhead_images=float(fixed / inv_rate))
    sw = dataclasses.replace(base.software, scaleout_s_per_doubling=float(slope))
    return dataclasses.replace(base, node=node, software=sw)


def calibrate_marenostrum4(stampede2: Cluster, rows=TABLE_VI,
                           cpus: int = MN4_CALIBRATION_CPUS) -> Cluster:
    """Skylake node rate from one Table VI row; everything else carried over or spec."""
    (row,) = [r for r in rows if r.cpus == cpus]
    b0 = stampede2.node.batch_overhead_images
    node = dataclasses.replace(SKX_8160_2S, batch_overhead_images=b0)
    base = Cluster("marenostrum4", node, OPA_MN4, stampede2.software)
    t = iteration_seconds(row)
    scale = stampede2.software.scaleout_s_per_doubling * _knee_doublings(
        row.nodes, stampede2.software.scaleout_knee_nodes)
    compute = t
    for _ in range(5):
        compute = t - scale - _modelled_overheads(base, row, compute)
    if compute <= 0:
        raise ValueError(f"row {row} leaves no time for compute")
    node = dataclasses.replace(node, images_per_s=(row.local_batch + b0) / compute)
    return dataclasses.replace(base, node=node)


def calibrated_clusters() -> dict[str, Cluster]:
    """Both paper systems, calibrated as the module docstring says; keyed by node type."""
    s2 = calibrate_stampede2()
    mn4 = calibrate_marenostrum4(s2)
    return {s2.node.name: s2, mn4.node.name: mn4}
