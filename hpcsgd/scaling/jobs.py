"""Time to train for a job: from explicit parameters or a jobs/*.toml file.

A job file is read for `cluster.node_type`, `cluster.nodes`, `cluster.ranks_per_node`,
`train.global_batch`, `train.epochs` and, when present, `train.accumulation` and
`train.eval_every_epochs` (default 1.0 as in hpcsgd.config.TrainConfig: one pass over the
validation set per that many epochs).
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hpcsgd.scaling.calibration import calibrated_clusters
from hpcsgd.scaling.hardware import Cluster, this_machine
from hpcsgd.scaling.model import IMAGENET_TRAIN_IMAGES, time_to_train
from hpcsgd.scaling.projection import hpcsgd_cluster


@dataclass(frozen=True)
class Job:
    node_type: str
    nodes: int
    ranks_per_node: int
    global_batch: int
    epochs: float
    accumulation: int = 1
    evaluations: int = 1
    source: str = ""

    def __post_init__(self):
        for name in ("nodes", "ranks_per_node", "global_batch", "accumulation"):
            if getattr(self, name) < 1:
                raise ValueError(f"{self.source or 'job'}: {name} = {getattr(self, name)!r} "
                                 "must be >= 1")
        ranks = self.nodes * self.ranks_per_node * self.accumulation
        if self.global_batch % ranks:
            raise ValueError(f"{self.source or 'job'}: train.global_batch = {self.global_batch} "
                             f"is not divisible by nodes x ranks_per_node x accumulation = {ranks}")
        if self.epochs <= 0:
            raise ValueError(f"{self.source or 'job'}: train.epochs = {self.epochs!r} must be > 0")

    @property
    def local_batch(self) -> int:
        return self.global_batch // (self.nodes * self.ranks_per_node * self.accumulation)

    @property
    def iterations(self) -> int:
        """Optimizer steps the trainer runs: train.epochs counts epochs of
        floor(images / global batch) steps (hpcsgd.data.sharding drops the remainder)."""
        return max(1, round(self.epochs * (IMAGENET_TRAIN_IMAGES // self.global_batch)))

    @property
    def imagenet_epochs(self) -> float:
        """Passes over the 1.28M ImageNet images those steps make."""
        return self.iterations * self.global_batch / IMAGENET_TRAIN_IMAGES


def read_job(path: str | Path) -> Job:
    """The scaling-relevant keys of a job TOML; a missing key is an error that names it."""
    path = Path(path)
    table = tomllib.loads(path.read_text())
    cluster, train = table.get("cluster", {}), table.get("train", {})

    def need(section: dict, name: str, key: str):
        if key not in section:
            raise ValueError(f"{path}: [{name}] {key} is missing")
        return section[key]

    epochs = float(need(train, "train", "epochs"))
    every = float(train.get("eval_every_epochs", 1.0))
    job = Job(node_type=need(cluster, "cluster", "node_type"),
               nodes=int(need(cluster, "cluster", "nodes")),
               ranks_per_node=int(cluster.get("ranks_per_node", 1)),
               global_batch=int(need(train, "train", "global_batch")),
               epochs=epochs, accumulation=int(train.get("accumulation", 1)),
               evaluations=max(1, math.floor(epochs / every)),
               source=str(path))
    if "local_batch" in train and train["local_batch"] != job.local_batch:
        raise ValueError(f"{path}: train.local_batch = {train['local_batch']!r} but "
                         f"train.global_batch / (nodes x ranks_per_node x accumulation) = "
                         f"{job.local_batch}")
    return job


def clusters(measurements: str | Path | None = None) -> dict[str, Cluster]:
    """Node type name -> calibrated cluster.

    'this-machine' (needs the measurements JSON) is nodes like this one running hpcsgd with
    its defaults (25 MiB buckets, comm.overlap = true) on Omni-Path, with Stampede2's
    scale-out term: hpcsgd.scaling.projection.hpcsgd_cluster.
    """
    found = calibrated_clusters()
    if measurements is not None and Path(measurements).exists():
        node, net = this_machine(measurements)
        found[node.name] = hpcsgd_cluster(node, net, found["knl-7250"])
    return found


def predict(job: Job, known: dict[str, Cluster]) -> dict:
    if job.node_type not in known:
        raise ValueError(f"{job.source or 'job'}: cluster.node_type = {job.node_type!r} is "
                         f"unknown (known: {', '.join(sorted(known))})")
    return time_to_train(known[job.node_type], nodes=job.nodes,
                         ranks_per_node=job.ranks_per_node, local_batch=job.local_batch,
                         iterations=job.iterations, evaluations=job.evaluations,
                         accumulation=job.accumulation)


def find_jobs(root: str | Path) -> list[Job]:
    """Every jobs/**/*.toml that has a [cluster] section (others are not scaling jobs)."""
    jobs = []
    for path in sorted(Path(root).rglob("*.toml")):
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError:
            continue
        if "cluster" in table and "train" in table:
            jobs.append(read_job(path))
    return jobs
