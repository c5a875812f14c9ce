"""Iteration time, time per epoch and time to train of synchronous data-parallel SGD.

    t_iter = t_compute(B) + t_comm_exposed + t_scaleout + t_update + t_data

- t_compute(B) = (B + B0) / r per rank: r the node's ResNet-50 training rate, B0 the fixed
  per-iteration cost in images (small local batches use the node less well);
- t_comm_exposed: the gradient allreduce (allreduce.py), split into the stack's messages,
  partly hidden behind the backward pass (``exposed_seconds``);
- t_scaleout: an empirical cost per doubling of the node count past a knee, for what the
  alpha-beta model does not capture at scale (jitter, congestion); 0 unless calibrated;
- t_update: the SGD-with-momentum step, memory bound; t_data: exposed input pipeline time.
All functions are pure; they take the cluster description they use.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from hpcsgd.scaling.allreduce import allreduce
from hpcsgd.scaling.hardware import RESNET50_GRAD_BYTES, Cluster, NodeType, update_seconds

IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC2012 training set (paper IV-A: 1.28 million)
IMAGENET_VAL_IMAGES = 50_000       # ILSVRC2012 validation set (paper IV-A)
# Backward computes gradients for both inputs and weights: about twice the forward flops,
# so two thirds of a training step (a standard estimate, not measured here).
BACKWARD_SHARE = 2.0 / 3.0


@dataclass(frozen=True)
class Breakdown:
    compute: float
    comm: float
    scaleout: float
    update: float
    data: float

    @property
    def total(self) -> float:
        return self.compute + self.comm + self.scaleout + self.update + self.data

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def compute_seconds(node: NodeType, local_batch: float, ranks_per_node: int = 1) -> float:
    """One rank's forward + backward on local_batch images; ranks share the node evenly."""
    if not node.calibrated:
        raise ValueError(f"node type {node.name!r} has no calibrated compute rate")
    if local_batch <= 0:
        raise ValueError(f"local_batch = {local_batch!r}: must be > 0")
    return (local_batch + node.batch_overhead_images) * ranks_per_node / node.images_per_s


def exposed_seconds(per_message: float, messages: int, backward: float, overlap: float) -> float:
    """Time the allreduces add after backward ends.

    The gradients of message i (of n) are ready a fraction (n - i)/n * overlap of the backward
    pass before it ends, and the messages go one at a time. The last one finishes
    max(tau, n tau - overlap * backward * (n-1)/n) after backward: either the last message
    alone, or the whole queue minus the part that ran under backward. overlap = 0 gives n tau.
    """
    if messages < 1:
        raise ValueError(f"messages = {messages!r}: must be >= 1")
    if per_message <= 0:
        return 0.0
    hidden = overlap * backward * (messages - 1) / messages
    return max(per_message, messages * per_message - hidden)


def scaleout_seconds(nodes: int, per_doubling: float, knee_nodes: int) -> float:
    return per_doubling * max(0.0, math.log2(nodes / knee_nodes))


def iteration(cluster: Cluster, local_batch: float, nodes: int, ranks_per_node: int = 1, *,
              grad_bytes: float = RESNET50_GRAD_BYTES, algorithm: str | None = None,
              accumulation: int = 1) -> Breakdown:
    """One optimizer step: `accumulation` micro-batches of local_batch, then one allreduce."""
    if nodes < 1 or ranks_per_node < 1 or accumulation < 1:
        raise ValueError(f"nodes = {nodes!r}, ranks_per_node = {ranks_per_node!r}, "
                         f"accumulation = {accumulation!r}: all must be >= 1")
    node, net, sw = cluster.node, cluster.network, cluster.software
    micro = compute_seconds(node, local_batch, ranks_per_node)
    comm = 0.0
    if nodes * ranks_per_node > 1:
        per_message = allreduce(grad_bytes / sw.messages, nodes, ranks_per_node,
                                algorithm=algorithm or net.algorithm, inter=net.inter,
                                intra=net.intra).total
        # only the last micro-batch's backward can hide the allreduce
        comm = exposed_seconds(per_message, sw.messages, BACKWARD_SHARE * micro, sw.overlap)
    return Breakdown(
        compute=accumulation * micro, comm=comm,
        scaleout=scaleout_seconds(nodes, sw.scaleout_s_per_doubling, sw.scaleout_knee_nodes),
        update=update_seconds(grad_bytes, node.mem_bw_gbs), data=sw.data_s)


def iterations_per_epoch(local_batch: float, nodes: int, ranks_per_node: int = 1,
                         accumulation: int = 1) -> float:
    return IMAGENET_TRAIN_IMAGES / (local_batch * nodes * ranks_per_node * accumulation)


def epoch_seconds(cluster: Cluster, local_batch: float, nodes: int, ranks_per_node: int = 1,
                  **kw) -> float:
    step = iteration(cluster, local_batch, nodes, ranks_per_node, **kw).total
    return step * iterations_per_epoch(local_batch, nodes, ranks_per_node,
                                       kw.get("accumulation", 1))


def eval_seconds(cluster: Cluster, nodes: int, ranks_per_node: int, batch: float) -> float:
    """One pass over the validation set, forward only (a third of a training step)."""
    steps = math.ceil(IMAGENET_VAL_IMAGES / (nodes * ranks_per_node * batch))
    return steps * (1 - BACKWARD_SHARE) * compute_seconds(cluster.node, batch, ranks_per_node)


def time_to_train(cluster: Cluster, *, nodes: int, ranks_per_node: int, local_batch: float,
                  epochs: float | None = None, iterations: int | None = None,
                  evaluations: int = 1, accumulation: int = 1) -> dict:
    """Training time for a number of epochs (or exact iterations) plus evaluations.

    Give exactly one of epochs and iterations. Returns seconds: per iteration (with its
    breakdown), per epoch, training, evaluation and total.
    """
    if (epochs is None) == (iterations is None):
        raise ValueError("give exactly one of epochs and iterations")
    step = iteration(cluster, local_batch, nodes, ranks_per_node, accumulation=accumulation)
    per_epoch = step.total * iterations_per_epoch(local_batch, nodes, ranks_per_node,
                                                  accumulation)
    train = per_epoch * epochs if epochs is not None else step.total * iterations
    evals = evaluations * eval_seconds(cluster, nodes, ranks_per_node, local_batch)
    return {"iteration": step.as_dict(), "epoch_s": per_epoch, "train_s": train,
            "eval_s": evals, "total_s": train + evals}
