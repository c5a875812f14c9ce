"""The data path across ranks: disjoint covering shards, resumption, node-local staging and
batches that do not depend on the world size. Holds at any world size."""
import numpy as np
import torch

from hpcsgd.config import Config, DataConfig
from hpcsgd.data import (SmallImageSource, TrainLoader, build_loaders, build_sources,
                         eval_batches)
from hpcsgd.store.lmdb_store import LMDBWriter
from hpcsgd.store.datum import raw_datum
from imagenet_helpers import sample_jpegs, write_jpeg_lmdb

N = 203  # not a multiple of any global batch below: the remainder is exercised


def _indexed_lmdb(path):
    """Record i has label i, so the labels a loader yields name the samples it read."""
    with LMDBWriter(path, map_size=1 << 26) as w:
        for i in range(N):
            w.put(raw_datum(np.zeros((1, 28, 28), np.uint8), i))


def _labels_of_epoch(source, *, rank, size, local_batch, accumulation, start_step=0, epoch=4):
    loader = TrainLoader(source, seed=11, rank=rank, size=size, local_batch=local_batch,
                         accumulation=accumulation, augment=True)
    return [(s, m, y.tolist()) for s, m, _, y in loader.epoch(epoch, start_step)]


def test_shards_of_an_epoch_are_disjoint_and_cover_the_data(world, shared_tmp):
    if world.rank == 0:
        _indexed_lmdb(shared_tmp / "idx")
    world.comm.Barrier()
    source = SmallImageSource(DataConfig(), shared_tmp / "idx", num_classes=N)
    local_batch, accumulation = 3, 2
    mine = _labels_of_epoch(source, rank=world.rank, size=world.size, local_batch=local_batch,
                            accumulation=accumulation)
    every = [i for batches in world.comm.allgather(mine) for _, _, labels in batches
             for i in labels]
    global_batch = local_batch * world.size * accumulation
    assert len(every) == len(set(every))              # disjoint: no sample twice
    assert len(every) == N - N % global_batch         # all but the documented remainder
    # the world's step k is the 1-rank global batch of step k (any world size)
    alone = _labels_of_epoch(source, rank=0, size=1, local_batch=global_batch, accumulation=1)
    for step, micro, labels in mine:
        start = (micro * world.size + world.rank) * local_batch
        assert labels == alone[step][2][start:start + local_batch]
    # a resumed sampler continues exactly
    resumed = _labels_of_epoch(source, rank=world.rank, size=world.size, local_batch=local_batch,
                               accumulation=accumulation, start_step=5)
    assert resumed == [b for b in mine if b[0] >= 5]


def test_staged_imagenet_batches_do_not_depend_on_world_size(world, shared_tmp):
    if world.rank == 0:
        items = sample_jpegs(16, seed=7)
        write_jpeg_lmdb(shared_tmp / "in" / "train", items)
        write_jpeg_lmdb(shared_tmp / "in" / "val", items[:5])
    world.comm.Barrier()
    cfg = Config()
    cfg.data.name, cfg.data.path, cfg.data.eval_split = "imagenet", str(shared_tmp / "in"), "val"
    cfg.data.workers, cfg.data.crop_size, cfg.data.eval_resize = 1, 48, 55
    cfg.data.stage_dir = str(shared_tmp / "shm")
    cfg.model.num_classes, cfg.train.seed = 20, 2
    loader, eval_source = build_loaders(cfg, world, local_batch=2)
    try:
        # one copy per node, made by node-local rank 0; every rank reads the same one
        paths = world.comm.allgather(str(loader.source.reader.path))
        assert len(set(paths)) == world.num_nodes and paths[world.rank].startswith(cfg.data.stage_dir)
        assert len(list((shared_tmp / "shm").glob("train-*"))) == 1
        step0 = next(loader.epoch(0))
        # reference: one rank, the whole global batch, decoded in this process
        cfg.data.workers = 0
        (ref_source,) = build_sources(cfg, [loader.source.reader.path], local_batch=2 * world.size)
        alone = TrainLoader(ref_source, seed=2, rank=0, size=1, local_batch=2 * world.size,
                            accumulation=1, augment=True)
        _, _, images, labels = next(alone.epoch(0))
        mine = slice(2 * world.rank, 2 * world.rank + 2)
        assert torch.equal(step0[3], labels[mine]) and torch.equal(step0[2], images[mine])
        mine_eval = eval_batches(eval_source, rank=world.rank, size=world.size, batch=4)
        assert world.comm.allreduce(sum(len(y) for _, y in mine_eval)) == 5
    finally:
        loader.source.pool.close()
    world.comm.Barrier()
