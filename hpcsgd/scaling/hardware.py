"""Node types, networks and training stacks as data, each number with its source.

Spec-sheet numbers are fixed here. The two numbers no spec sheet gives, a node's ResNet-50
training rate and its per-iteration fixed cost, are left as None and set by
``hpcsgd.scaling.calibration`` (from stated paper rows) or by ``this_machine`` (from our
measurements in docs/measurements/this_machine.json). ``sources`` maps each field to where
its value comes from; the report prints them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from hpcsgd.scaling.allreduce import ALGORITHMS, Link

# ResNet-50: 25,557,032 fp32 parameters in 161 tensors (hpcsgd.models.resnet: 53 conv weights,
# 53 BN weights and biases, fc weight and bias). The paper rounds the model to 98 MB (V-A1).
RESNET50_PARAMS = 25_557_032
RESNET50_TENSORS = 161
RESNET50_GRAD_BYTES = 4 * RESNET50_PARAMS

GB = 1e9


@dataclass(frozen=True)
class NodeType:
    name: str
    cores: int
    compute_cores: int
    peak_sp_tflops: float
    mem_bw_gbs: float
    images_per_s: float | None = None
    """Asymptotic ResNet-50 training rate of the whole node (large local batch)."""
    batch_overhead_images: float | None = None
    """Fixed cost of one iteration, in images: t_compute(B) = (B + B0) / images_per_s."""
    sources: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.images_per_s is not None and self.images_per_s <= 0:
            raise ValueError(f"{self.name}: images_per_s = {self.images_per_s!r} must be > 0")

    @property
    def calibrated(self) -> bool:
        return self.images_per_s is not None and self.batch_overhead_images is not None


@dataclass(frozen=True)
class Network:
    name: str
    inter: Link
    """Between nodes (one NIC per node)."""
    intra: Link
    """Between ranks of one node (shared memory)."""
    algorithm: str = "halving_doubling"
    sources: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"{self.name}: algorithm = {self.algorithm!r}, "
                             f"must be one of {', '.join(ALGORITHMS)}")


@dataclass(frozen=True)
class Software:
    """How a training stack communicates."""
    name: str
    messages: int
    """Allreduce calls per iteration (per tensor, or per fused bucket)."""
    overlap: float
    """Fraction of the backward pass during which allreduces can run (0 = after backward)."""
    scaleout_s_per_doubling: float = 0.0
    """Empirical exposed time per doubling of the node count beyond scaleout_knee_nodes."""
    scaleout_knee_nodes: int = 1
    data_s: float = 0.0
    """Exposed data-loading time per iteration."""
    sources: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if not 0.0 <= self.overlap <= 1.0:
            raise ValueError(f"{self.name}: overlap = {self.overlap!r} must be in [0, 1]")
        if self.messages < 1:
            raise ValueError(f"{self.name}: messages = {self.messages!r} must be >= 1")


@dataclass(frozen=True)
class Cluster:
    name: str
    node: NodeType
    network: Network
    software: Software


def shared_memory_link(mem_bw_gbs: float, alpha: float = 0.5e-6) -> Link:
    """A copy reads and writes each byte; a sum reads two operands and writes one."""
    return Link(alpha=alpha, beta=2 / (mem_bw_gbs * GB), gamma=3 / (mem_bw_gbs * GB))


KNL_7250 = NodeType(
    name="knl-7250", cores=68, compute_cores=64,
    # 68 cores x 1.4 GHz x 2 AVX-512 units x 16 fp32 lanes x 2 (FMA)
    peak_sp_tflops=68 * 1.4 * 2 * 16 * 2 / 1e3,
    mem_bw_gbs=400.0,
    sources={
        "cores": "Intel Xeon Phi 7250 spec sheet: 68 cores, 1.4 GHz, 16 GB MCDRAM",
        "compute_cores": "paper IV-E: 64 OpenMP compute cores, last 4 cores for ML-SL",
        "peak_sp_tflops": "spec sheet: 68 cores x 1.4 GHz x 64 fp32 flop/cycle",
        "mem_bw_gbs": "spec sheet: MCDRAM 400+ GB/s (Stampede2 runs it as cache, paper IV-E)",
        "images_per_s": "calibrated: Stampede2 Table V calibration rows",
        "batch_overhead_images": "calibrated: Stampede2 Table V calibration rows",
    })

SKX_8160_2S = NodeType(
    name="skx-8160", cores=48, compute_cores=44,
    # 48 cores x 2.1 GHz (base; AVX-512 runs lower) x 2 FMA units x 16 fp32 lanes x 2
    peak_sp_tflops=48 * 2.1 * 2 * 16 * 2 / 1e3,
    # 2 sockets x 6 channels x DDR4-2666 x 8 bytes
    mem_bw_gbs=2 * 6 * 2.666 * 8,
    sources={
        "cores": "Intel Xeon Platinum 8160 spec sheet: 24 cores, 2.1 GHz; 2 per MN4 node (BSC)",
        "compute_cores": "paper IV-E: 22 OpenMP threads per socket, 44 per node",
        "peak_sp_tflops": "spec sheet at base clock (upper bound: AVX-512 clocks lower)",
        "mem_bw_gbs": "spec sheet: 6 DDR4-2666 channels per socket; BSC: 12 DIMMs per node",
        "images_per_s": "calibrated: MareNostrum 4 Table VI, 512-CPU row only",
        "batch_overhead_images": "transferred from the KNL calibration (same Intel Caffe)",
    })

OPA_100 = Link(
    alpha=1.0e-6,          # assumed: ~1 us, the usual MPI latency of 100 Gb/s HPC fabrics
    beta=1 / (12.5 * GB),  # 100 Gb/s line rate = 12.5 GB/s, used as is (an upper bound)
)


def opa_network(name: str, node: NodeType, note: str) -> Network:
    inter = Link(OPA_100.alpha, OPA_100.beta, gamma=3 / (node.mem_bw_gbs * GB))
    return Network(name=name, inter=inter, intra=shared_memory_link(node.mem_bw_gbs),
                   algorithm="halving_doubling", sources={
                       "inter.alpha": "assumed ~1 us (usual MPI latency of 100 Gb/s fabrics); "
                                      "10x more moves no prediction (report 3.3)",
                       "inter.beta": "Omni-Path 100 Gb/s line rate (12.5 GB/s)",
                       "inter.gamma": "sum at node memory bandwidth (3 bytes moved per byte)",
                       "intra": "shared memory at node memory bandwidth, alpha 0.5 us (assumed)",
                       "algorithm": "MPICH picks Rabenseifner for long messages (Thakur et "
                                    "al. 2005); assumed the same for Intel MPI / ML-SL",
                       "topology": note})


OPA_STAMPEDE2 = opa_network("opa-stampede2", KNL_7250,
                            "TACC Stampede2: Omni-Path 100 Gb/s fat tree (paper V-A1)")
OPA_MN4 = opa_network("opa-mn4", SKX_8160_2S,
                      "BSC MareNostrum 4: 100 Gb/s Omni-Path full-fat tree")

# The knee: "above 97%" weak-scaling efficiency from 1 to 256 KNL nodes (paper V-A1), so
# the stack's communication is taken as hidden up to 256 nodes. The slope is calibrated.
INTEL_CAFFE_MLSL = Software(
    name="intel-caffe+ml-sl", messages=RESNET50_TENSORS, overlap=1.0,
    scaleout_s_per_doubling=0.0, scaleout_knee_nodes=256, data_s=0.0,
    sources={
        "messages": "one allreduce per learnable tensor (ML-SL reduces layer by layer, III)",
        "overlap": "paper III: ML-SL overlaps communication with the backward pass, on "
                   "dedicated cores (IV-E)",
        "scaleout_s_per_doubling": "calibrated: Stampede2 Table V calibration rows",
        "scaleout_knee_nodes": "paper V-A1: >97% efficiency from 1 to 256 KNL nodes",
        "data_s": "paper V-A1: the 42 GB LMDB is copied to RAM; Caffe prefetches (hidden)",
    })


def hpcsgd_software(bucket_mb: float = 25.0, overlap: float = 1.0,
                    scaleout_s_per_doubling: float = 0.0, knee_nodes: int = 1) -> Software:
    """hpcsgd: gradients fused into buckets of bucket_mb MiB (hpcsgd.config CommConfig)."""
    messages = max(1, math.ceil(RESNET50_GRAD_BYTES / (bucket_mb * 2**20)))
    return Software(
        name=f"hpcsgd (overlap {overlap:g})", messages=messages, overlap=overlap,
        scaleout_s_per_doubling=scaleout_s_per_doubling, scaleout_knee_nodes=knee_nodes,
        sources={"messages": f"comm.bucket_mb = {bucket_mb:g} MiB buckets",
                 "overlap": "1 = comm.overlap = true (default: buckets reduced on the "
                            "communication thread during backward, ideal overlap assumed); "
                            "0 = comm.overlap = false (after backward)"})


def this_machine(path: str | Path) -> tuple[NodeType, Network]:
    """This machine's node and (shared-memory) network, from tools/measure_node.py's JSON.

    The compute rate comes from the "compute" section when there is one, else from the
    "reported" rows (whole training steps, update included: no separate update or gamma).
    """
    path = Path(path)
    data = json.loads(path.read_text())
    ar = data["allreduce"]
    if "compute" in data:
        comp, what = data["compute"], f"measured ({path.name}: compute rows, fit)"
        mem_bw, gamma = comp["stream_GBps"], comp["gamma_s_per_byte"]
    else:
        comp, what = data["reported"], f"reported, not re-measured ({path.name}: reported)"
        mem_bw, gamma = math.inf, 0.0  # the update is inside the reported step times
    # the measured steps include the SGD update, which the model charges separately
    update = update_seconds(RESNET50_GRAD_BYTES, mem_bw)
    rate, b0 = fit_rate([r["local_batch"] for r in comp["rows"]],
                        [r["step_s"] - update for r in comp["rows"]])
    # MPICH Rabenseifner on p ranks: beta_eff = 2 (p-1)/p beta + (p-1)/p gamma
    p = ar["ranks"]
    frac = (p - 1) / p
    beta = max((ar["beta_eff_s_per_byte"] - frac * gamma) / (2 * frac), 0.0)
    link = Link(alpha=ar["alpha_s"], beta=beta, gamma=gamma)
    cpu = data.get("machine", {})
    node = NodeType(
        name="this-machine", cores=cpu.get("cores", 1), compute_cores=comp["threads"],
        peak_sp_tflops=float("nan"), mem_bw_gbs=mem_bw,
        images_per_s=rate, batch_overhead_images=b0,
        sources={"images_per_s": what, "batch_overhead_images": what + (
                     "; one batch size, so B0 = 0" if len(comp["rows"]) == 1 else ""),
                 "mem_bw_gbs": "measured: numpy triad" if math.isfinite(mem_bw) else
                               "not measured: update inside the reported step times",
                 "cores": f"{cpu.get('cpu', '?')}, {cpu.get('cores', '?')} cores"})
    net = Network(name="this-machine-shm", inter=link, intra=link, algorithm="halving_doubling",
                  sources={"inter": f"measured: {path.name} allreduce rows, "
                                    f"{ar['ranks']} ranks, {ar['transport']}"})
    return node, net


def update_seconds(grad_bytes: float, mem_bw_gbs: float) -> float:
    """SGD with momentum streams weights, gradients and momenta in and weights, momenta out."""
    return 5 * grad_bytes / (mem_bw_gbs * GB)


def fit_rate(batches, step_seconds) -> tuple[float, float]:
    """Least squares of t = (B + B0) / r over measured (B, t); returns (r, B0).

    With one point B0 is 0 (no information about the fixed cost).
    """
    pts = list(zip(batches, step_seconds))
    if not pts:
        raise ValueError("fit_rate needs at least one (batch, seconds) point")
    if len({b for b, _ in pts}) == 1:
        b, t = pts[0]
        return b / t, 0.0
    n = len(pts)
    # math.fsum: correctly rounded sums, the same on every Python (3.12's sum() compensates,
    # 3.11's does not), so the generated docs/scaling.md is too
    mb = math.fsum(b for b, _ in pts) / n
    mt = math.fsum(t for _, t in pts) / n
    slope = (math.fsum((b - mb) * (t - mt) for b, t in pts)
             / math.fsum((b - mb) ** 2 for b, _ in pts))
    if slope <= 0:
        raise ValueError(f"step time does not grow with the batch: {pts}")
    intercept = mt - slope * mb
    return 1 / slope, max(intercept, 0.0) / slope
