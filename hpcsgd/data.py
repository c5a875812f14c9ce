"""Batches for one rank: sharded indices -> LMDB records -> decoded, augmented tensors.

Corrupt records are counted and skipped (the batch shrinks by one); when a rank's count
exceeds ``max_corrupt_fraction`` of the records it has read, the run stops with the key.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hpcsgd import sharding
from hpcsgd.config import DataConfig
from hpcsgd.lmdb_store import LMDBReader
from hpcsgd.records import RecordError, decode_datum

# Per-channel statistics of the training images (pixel values scaled to [0, 1]).
NORMALIZATION = {"fashion-mnist": ((0.2860,), (0.3530,))}


class CorruptDataError(RuntimeError):
    pass


@dataclass
class DataStats:
    records: int = 0
    corrupt: int = 0


class SmallImageSource:
    """Raw-pixel records (Fashion-MNIST style): decode, augment (flip + shift), normalize."""

    def __init__(self, cfg: DataConfig, split: str):
        self.cfg = cfg
        self.reader = LMDBReader(f"{cfg.path}/{split}")
        mean, std = NORMALIZATION[cfg.name]
        self.mean = np.asarray(mean, np.float32)[:, None, None] * 255.0
        self.inv_std = 1.0 / (np.asarray(std, np.float32)[:, None, None] * 255.0)
        self.stats = DataStats()

    def __len__(self) -> int:
        return len(self.reader)

    def load(self, indices, *, augment: bool, rng: np.random.Generator | None = None):
        """(images float32 NCHW normalized, labels int64) for the given record indices."""
        images, labels = [], []
        for index, raw in zip(indices, self.reader.get_many(indices)):
            self.stats.records += 1
            try:
                if raw is None:
                    raise RecordError("key vanished from the LMDB")
                datum = decode_datum(raw)
                pixels = datum.pixels()
            except RecordError as e:
                self._count_corrupt(index, e)
                continue
            images.append(pixels)
            labels.append(datum.label)
        if not images:
            raise CorruptDataError(f"{self.reader.path}: every record of a batch was corrupt")
        batch = np.stack(images).astype(np.float32)
        if augment:
            batch = _flip_and_shift(batch, rng)
        batch = (batch - self.mean) * self.inv_std
        return torch.from_numpy(batch), torch.tensor(labels, dtype=torch.int64)

    def _count_corrupt(self, index: int, error: Exception) -> None:
        self.stats.corrupt += 1
        limit = self.cfg.max_corrupt_fraction * max(self.stats.records, 1000)
        if self.stats.corrupt > limit:
            raise CorruptDataError(
                f"{self.reader.path}: record {self.reader.key(index)!r} is corrupt ({error}); "
                f"{self.stats.corrupt} corrupt of {self.stats.records} read exceeds "
                f"data.max_corrupt_fraction = {self.cfg.max_corrupt_fraction}")


def _flip_and_shift(batch: np.ndarray, rng: np.random.Generator, pad: int = 2) -> np.ndarray:
    """Random horizontal flip and a random shift of up to `pad` pixels (zero fill)."""
    n, _, h, w = batch.shape
    flip = rng.random(n) < 0.5
    batch[flip] = batch[flip, :, :, ::-1]
    padded = np.zeros((n, batch.shape[1], h + 2 * pad, w + 2 * pad), np.float32)
    padded[:, :, pad:pad + h, pad:pad + w] = batch
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    return np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def build_source(cfg: DataConfig, split: str) -> SmallImageSource:
    if cfg.name == "fashion-mnist":
        return SmallImageSource(cfg, split)
    raise NotImplementedError(f"data.name = {cfg.name!r}: the ImageNet JPEG path is not built yet")


class TrainLoader:
    """One rank's micro-batches of an epoch, resumable at any step."""

    def __init__(self, source, *, seed: int, rank: int, size: int, local_batch: int,
                 accumulation: int, augment: bool):
        self.source, self.seed, self.rank, self.size = source, seed, rank, size
        self.local_batch, self.accumulation, self.augment = local_batch, accumulation, augment
        self.steps_per_epoch = sharding.steps_per_epoch(len(source),
                                                        local_batch * size * accumulation)

    def epoch(self, epoch: int, start_step: int = 0, collapse: bool = False):
        """Yield (step, micro, images, labels) from `start_step` to the end of the epoch.
        `collapse` (Codreanu V-B2) turns scale/aspect augmentation off; the small-image
        transform has none, so it changes nothing here."""
        perm = sharding.epoch_permutation(len(self.source), seed=self.seed, epoch=epoch)
        # augmentation randomness is a function of (seed, epoch, step, rank), so a resumed run repeats it
        for step in range(start_step, self.steps_per_epoch):
            rng = np.random.default_rng([self.seed, epoch, step, self.rank, 1])
            for micro in range(self.accumulation):
                idx = sharding.micro_batch_indices(
                    perm, step=step, micro=micro, rank=self.rank, size=self.size,
                    local_batch=self.local_batch, accumulation=self.accumulation)
                yield (step, micro, *self.source.load(idx, augment=self.augment, rng=rng))


def build_loaders(cfg, world, local_batch: int):
    """(training loader of this rank, evaluation source) for the configured data set."""
    train_source = build_source(cfg.data, cfg.data.train_split)
    loader = TrainLoader(train_source, seed=cfg.train.seed, rank=world.rank, size=world.size,
                         local_batch=local_batch, accumulation=cfg.train.accumulation,
                         augment=cfg.data.augment)
    return loader, build_source(cfg.data, cfg.data.eval_split)


def eval_batches(source, *, rank: int, size: int, batch: int):
    shard = sharding.eval_shard(len(source), rank=rank, size=size)
    for start in range(shard.start, shard.stop, batch):
        yield source.load(range(start, min(start + batch, shard.stop)), augment=False)
