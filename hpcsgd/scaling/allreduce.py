"""Allreduce cost models: latency (alpha), bandwidth (beta) and reduction (gamma) terms.

The alpha-beta-gamma model of Thakur, Rabenseifner and Gropp, "Optimization of collective
communication operations in MPICH" (IJHPCA 2005): a message of n bytes between two ranks
costs alpha + n*beta, and reducing n bytes costs n*gamma. Each function below returns the
three terms separately, so a report can say which one dominates. All are pure functions.

- ``ring``: reduce-scatter then allgather around a ring (Patarasuk and Yuan 2009); bandwidth
  optimal, latency linear in the number of ranks.
- ``halving_doubling``: Rabenseifner's algorithm, reduce-scatter by recursive halving then
  allgather by recursive doubling (MPICH's choice for long messages); same bandwidth term,
  latency logarithmic. Non-power-of-two counts pay MPICH's extra fold-in/fold-out exchange.
- ``hierarchical``: reduce-scatter inside each node over shared memory, an allreduce of
  each rank's 1/ppn shard across nodes, then allgather inside the node.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Link:
    """Point-to-point costs: alpha seconds per message, beta/gamma seconds per byte."""
    alpha: float
    beta: float
    gamma: float = 0.0

    def __post_init__(self):
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"Link.{name} = {getattr(self, name)!r}: must be >= 0")


@dataclass(frozen=True)
class Cost:
    latency: float = 0.0
    bandwidth: float = 0.0
    reduction: float = 0.0

    @property
    def total(self) -> float:
        return self.latency + self.bandwidth + self.reduction

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.latency + other.latency, self.bandwidth + other.bandwidth,
                    self.reduction + other.reduction)


def _check(nbytes: float, ranks: int) -> None:
    if ranks < 1 or int(ranks) != ranks:
        raise ValueError(f"ranks = {ranks!r}: must be a positive integer")
    if nbytes < 0:
        raise ValueError(f"nbytes = {nbytes!r}: must be >= 0")


def ring_bytes(nbytes: float, ranks: int) -> float:
    """Bytes each rank sends in a ring allreduce: 2 (p-1)/p n, tending to 2n."""
    _check(nbytes, ranks)
    return 2.0 * (ranks - 1) / ranks * nbytes


def ring(nbytes: float, ranks: int, link: Link) -> Cost:
    """2(p-1) steps, each moving n/p bytes and (in the first half) reducing them."""
    _check(nbytes, ranks)
    if ranks == 1:
        return Cost()
    frac = (ranks - 1) / ranks
    return Cost(2 * (ranks - 1) * link.alpha, ring_bytes(nbytes, ranks) * link.beta,
                frac * nbytes * link.gamma)


def halving_doubling(nbytes: float, ranks: int, link: Link) -> Cost:
    """Rabenseifner: 2 log2(p) steps; bandwidth 2 (p-1)/p n beta like the ring.

    When p is not a power of two, MPICH first folds the r = p - 2^k extra ranks into
    partners (one full-vector send and reduction) and at the end sends them the result
    (Thakur et al. 2005): + 2 alpha + 2 n beta + n gamma.
    """
    _check(nbytes, ranks)
    if ranks == 1:
        return Cost()
    k = int(math.floor(math.log2(ranks)))
    p2 = 2 ** k
    frac = (p2 - 1) / p2
    cost = Cost(2 * k * link.alpha, 2 * frac * nbytes * link.beta, frac * nbytes * link.gamma)
    if ranks != p2:
        cost = cost + Cost(2 * link.alpha, 2 * nbytes * link.beta, nbytes * link.gamma)
    return cost


FLAT = {"ring": ring, "halving_doubling": halving_doubling}


def hierarchical(nbytes: float, nodes: int, ranks_per_node: int, *, intra: Link, inter: Link,
                 inter_algorithm: str = "halving_doubling") -> Cost:
    """Intra-node reduce-scatter + inter-node allreduce of n/ppn + intra-node allgather.

    The ppn shards cross the network at the same time through the node's one NIC, so the
    inter-node beta is multiplied by ppn: the NIC still carries the full 2n bytes.
    """
    _check(nbytes, nodes)
    _check(nbytes, ranks_per_node)
    inside = ring(nbytes, ranks_per_node, intra)  # reduce-scatter + allgather, shared memory
    shard_link = Link(inter.alpha, inter.beta * ranks_per_node, inter.gamma)
    across = FLAT[inter_algorithm](nbytes / ranks_per_node, nodes, shard_link)
    return inside + across


ALGORITHMS = ("ring", "halving_doubling", "hierarchical")


def allreduce(nbytes: float, nodes: int, ranks_per_node: int, *, algorithm: str, inter: Link,
              intra: Link) -> Cost:
    """One allreduce of nbytes over nodes x ranks_per_node ranks.

    Flat algorithms run over every rank on the inter-node link. With several ranks per
    node this is optimistic for halving_doubling (whose long-distance steps share the NIC);
    use ``hierarchical`` for ppn > 1.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm = {algorithm!r}: must be one of {', '.join(ALGORITHMS)}")
    if algorithm == "hierarchical":
        return hierarchical(nbytes, nodes, ranks_per_node, intra=intra, inter=inter)
    if nodes == 1 and ranks_per_node > 1:  # one node: the flat algorithm runs in shared memory
        return FLAT[algorithm](nbytes, ranks_per_node, intra)
    return FLAT[algorithm](nbytes, nodes * ranks_per_node, inter)
