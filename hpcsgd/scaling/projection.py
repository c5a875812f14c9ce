"""What hpcsgd would need per node to match the paper's Stampede2 times at scale.

Inputs, all stated in the report: our measured compute rate and allreduce constants
(docs/measurements/this_machine.json), the Omni-Path spec (we have no fabric to measure),
and the scale-out slope calibrated on Stampede2 (assumed to hit any stack at that scale).
For each node count we take the paper's local-batch-32 time per iteration and solve for
the compute time per iteration that leaves room for our communication, update and scale-out
costs; the required node rate is 32 images over that time.
"""
from __future__ import annotations

import dataclasses

from hpcsgd.scaling.allreduce import Link, allreduce
from hpcsgd.scaling.calibration import iteration_seconds
from hpcsgd.scaling.hardware import (OPA_100, RESNET50_GRAD_BYTES, Cluster, Network, NodeType,
                                     Software, hpcsgd_software, update_seconds)
from hpcsgd.scaling.model import (BACKWARD_SHARE, epoch_seconds, exposed_seconds,
                                  scaleout_seconds)
from hpcsgd.scaling.paper import TABLE_V

TARGET_NODES = (256, 512, 1024, 1536)
TARGET_BATCH = 32


def cluster_network(measured: Link) -> Link:
    """Our software on an Omni-Path cluster: per-message software latency on top of the
    fabric's, and bytes no faster than both the fabric and our measured host-side rate."""
    return Link(alpha=OPA_100.alpha + measured.alpha, beta=max(OPA_100.beta, measured.beta),
                gamma=measured.gamma)


def hpcsgd_cluster(node: NodeType, measured: Network, stampede2: Cluster, *,
                   overlap: float = 1.0, bucket_mb: float = 25.0) -> Cluster:
    """Nodes like this one running hpcsgd on Omni-Path, with Stampede2's scale-out term."""
    net = dataclasses.replace(measured, name="opa+hpcsgd", inter=cluster_network(measured.inter))
    sw = hpcsgd_software(bucket_mb, overlap, stampede2.software.scaleout_s_per_doubling,
                         stampede2.software.scaleout_knee_nodes)
    return Cluster("hpcsgd", node, net, sw)


def required_compute(target: float, per_message: float, software: Software,
                     fixed: float) -> float:
    """Compute seconds c with c + exposed(c) + fixed = target (exposed shrinks as c grows)."""
    c = target - fixed - software.messages * per_message
    for _ in range(50):
        exposed = exposed_seconds(per_message, software.messages, BACKWARD_SHARE * max(c, 0.0),
                                  software.overlap)
        c = target - fixed - exposed
    return c


def project(node: NodeType, measured: Network, stampede2: Cluster, *, bucket_mb: float = 25.0,
            nodes_list=TARGET_NODES, local_batch: int = TARGET_BATCH) -> list[dict]:
    """One row per node count: the paper's target and what our stack leaves for compute."""
    ours_rate = local_batch / ((local_batch + node.batch_overhead_images) / node.images_per_s)
    update = update_seconds(RESNET50_GRAD_BYTES, node.mem_bw_gbs)
    rows = []
    for nodes in nodes_list:
        (paper,) = [r for r in TABLE_V if r.nodes == nodes and r.local_batch == local_batch]
        target = iteration_seconds(paper)
        row = {"nodes": nodes, "paper_epoch_s": paper.seconds, "target_iter_s": target,
               "ours_images_per_s": ours_rate, "update_s": update}
        for key, overlap in (("blocking", 0.0), ("overlapped", 1.0)):  # comm.overlap off / on
            cluster = hpcsgd_cluster(node, measured, stampede2, overlap=overlap,
                                     bucket_mb=bucket_mb)
            net, sw = cluster.network, cluster.software
            per_message = allreduce(RESNET50_GRAD_BYTES / sw.messages, nodes, 1,
                                    algorithm=net.algorithm, inter=net.inter,
                                    intra=net.intra).total
            scale = scaleout_seconds(nodes, sw.scaleout_s_per_doubling, sw.scaleout_knee_nodes)
            fixed = scale + update + sw.data_s
            c = required_compute(target, per_message, sw, fixed)
            row[f"{key}_comm_s"] = target - fixed - c
            row[f"{key}_need_images_per_s"] = local_batch / c if c > 0 else float("inf")
            row[f"{key}_ours_epoch_s"] = epoch_seconds(cluster, local_batch, nodes)
            row["scaleout_s"] = scale
        rows.append(row)
    return rows
