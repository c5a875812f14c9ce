"""The data path: Caffe-Datum LMDBs (staged in node RAM or read in place) -> sharded,
decoded, augmented batches.

    loader, eval_source = build_loaders(cfg, world, local_batch)
    for step, micro, images, labels in loader.epoch(epoch, start_step, collapse): ...
    for images, labels in eval_batches(eval_source, rank=, size=, batch=): ...

Modules: `sources` (records -> samples, bad-record accounting), `transforms` (crop boxes,
resize, normalisation: pure functions), `jpeg` (DCT-scaled decode), `workers` (decode
processes and shared-memory slots), `loader` (prefetching epochs, evaluation blocks),
`staging` (copy to node-local RAM). Design and measurements: docs/data_path.md.
"""
from __future__ import annotations

import importlib
from pathlib import Path

# Exports load lazily (PEP 562): tools that only need `hpcsgd.data.jpeg` do not import torch.
_EXPORTS = {
    "TrainLoader": "loader", "run_requests": "loader",
    "CorruptDataError": "sources", "DataStats": "sources", "FillResult": "sources",
    "ImageNetSource": "sources", "SmallImageSource": "sources",
    "StagingError": "staging", "stage_lmdbs": "staging",
    "DecodePool": "workers", "WorkerError": "workers",
}
__all__ = ["build_loaders", "build_sources", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hpcsgd.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hpcsgd.data' has no attribute {name!r}")


def build_sources(cfg, paths: list[Path], *, local_batch: int):
    """Sources for the given LMDB folders; for ImageNet with workers, one shared DecodePool
    with a slot ring per source (slots hold one local batch each)."""
    from hpcsgd.data.sources import ImageNetSource, SmallImageSource
    from hpcsgd.data.workers import DecodePool
    data = cfg.data
    if data.name == "fashion-mnist":
        return [SmallImageSource(data, p, cfg.model.num_classes) for p in paths]
    sources = [ImageNetSource(data, p, cfg.model.num_classes) for p in paths]
    if data.workers > 0:
        # forked after the sources exist: the workers inherit them (LMDB reopened per process)
        pool = DecodePool(sources, workers=data.workers, slots=data.prefetch_batches,
                          capacity=local_batch)
        for ring, source in enumerate(sources):
            source.pool, source.ring = pool, ring
    return sources


def build_loaders(cfg, world, local_batch: int):
    """(training loader of this rank, evaluation source) for the configured data set."""
    from hpcsgd.data.loader import TrainLoader
    from hpcsgd.data.staging import stage_lmdbs
    data = cfg.data
    paths = [Path(data.path) / data.train_split, Path(data.path) / data.eval_split]
    if data.stage_dir:
        from hpcsgd.affinity.memory import default_placement
        # the copy in tmpfs is placed by this thread's policy: not in MCDRAM, which is for
        # the weights and activations (cluster.memory = "hbm")
        with default_placement():
            paths = stage_lmdbs(paths, data.stage_dir, world.node_comm, keep=data.stage_keep,
                                watch=world.watch)
    train_source, eval_source = build_sources(cfg, paths, local_batch=local_batch)
    loader = TrainLoader(train_source, seed=cfg.train.seed, rank=world.rank, size=world.size,
                         local_batch=local_batch, accumulation=cfg.train.accumulation,
                         augment=data.augment, prefetch=data.prefetch_batches)
    return loader, eval_source


def eval_batches(source, *, rank: int, size: int, batch: int):
    """(images, labels) over this rank's block of the split; see loader.eval_batches."""
    from hpcsgd.data import loader
    return loader.eval_batches(source, rank=rank, size=size, batch=batch)
