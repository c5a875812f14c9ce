"""Record sources: LMDB records -> fixed-size uint8 samples, with bad input counted.

A source's `fill(out, indices, mode=, seed_key=)` writes one NHWC uint8 sample per index into
`out` (a slice of a shared-memory slot, or a local array) and returns a `FillResult`. It runs
in decode worker processes or in the training process alike. A bad record (unparsable Datum,
truncated or corrupt image, label out of range) is reported with its key and, when training,
replaced by the next record in key order so the batch keeps its size; in evaluation it is
left out (every sample counted at most once). `normalize` turns the uint8 batch into the
float tensor the model takes, in the training process.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hpcsgd.config import DataConfig
from hpcsgd.data import jpeg, transforms
from hpcsgd.store.lmdb_store import DataPathError, LMDBReader
from hpcsgd.store.datum import Datum, RecordError, decode_datum

log = logging.getLogger("hpcsgd.data")

# Per-channel statistics of the 28x28 training images (pixel values scaled to [0, 1]).
SMALL_NORMALIZATION = {"fashion-mnist": ((0.2860,), (0.3530,))}
MAX_REPLACEMENTS = 16  # a run of this many bad records in key order is not a glitch


class CorruptDataError(RuntimeError):
    pass


@dataclass
class FillResult:
    labels: list[int]
    valid: list[bool]
    """False where an evaluation sample was bad and left out."""
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    """(key, reason) of every bad record met, replaced or left out."""
    records: int = 0
    """Records read, replacements included."""


@dataclass
class DataStats:
    records: int = 0
    corrupt: int = 0
    corrupt_keys: list[str] = field(default_factory=list)

    def add(self, result: FillResult, *, where: str, max_fraction: float) -> None:
        """Count a fill; log each bad record; stop the run past `max_fraction` of the records
        read (at least 1000 records are assumed, so one early bad record never stops it)."""
        self.records += result.records
        limit = max_fraction * max(self.records, 1000)
        for key, reason in result.corrupt:
            self.corrupt += 1
            self.corrupt_keys.append(key)
            log.warning("%s: bad record %r (%s)", where, key, reason)
            if self.corrupt > limit:
                keys = ", ".join(repr(k) for k in self.corrupt_keys[-5:])
                raise CorruptDataError(
                    f"{where}: record {key!r} is corrupt ({reason}); {self.corrupt} corrupt of "
                    f"{self.records} read exceeds data.max_corrupt_fraction = {max_fraction} "
                    f"(last keys: {keys})")


class _RecordSource:
    """What both sources share: the LMDB, the label range, the replace-or-skip rule."""
    sample_shape: tuple[int, int, int]

    def __init__(self, cfg: DataConfig, path: str | Path, num_classes: int):
        self.cfg = cfg
        self.reader = LMDBReader(path)
        self.num_classes = num_classes
        self.stats = DataStats()
        self.pool = None  # a DecodePool when decoding happens in worker processes
        self.ring = 0     # this source's slot ring in that pool

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def where(self) -> str:
        return str(self.reader.path)

    def fill(self, out: np.ndarray, indices, *, mode: str, seed_key: tuple) -> FillResult:
        result = FillResult(labels=[0] * len(indices), valid=[True] * len(indices))
        raws = self.reader.get_many(indices)
        for pos, (index, raw) in enumerate(zip(indices, raws)):
            index = int(index)
            for _ in range(MAX_REPLACEMENTS):
                result.records += 1
                try:
                    result.labels[pos] = self.sample(out[pos], raw, mode=mode,
                                                     seed_key=seed_key, index=index, pos=pos)
                    break
                except RecordError as e:  # jpeg.ImageDecodeError included
                    result.corrupt.append((self.reader.key(index), str(e)))
                    if mode == "eval":
                        result.valid[pos] = False
                        break
                    index = (index + 1) % len(self.reader)  # replacement: next record in key order
                    raw = self.reader.get_many([index])[0]
            else:
                raise CorruptDataError(f"{self.where}: {MAX_REPLACEMENTS} consecutive bad "
                                       f"records up to {self.reader.key(index)!r}")
        return result

    def sample(self, out: np.ndarray, raw: bytes | None, *, mode: str, seed_key: tuple,
               index: int, pos: int = 0) -> int:
        """One stored record -> one sample in `out`; returns its label. A bad record raises
        RecordError (the only exception `fill` counts and skips: anything else ends the run;
        tools/fuzz_records.py checks that)."""
        return self._sample(out, raw, mode, seed_key, index, pos)

    def _datum(self, raw: bytes | None) -> Datum:
        if raw is None:
            raise RecordError("key vanished from the LMDB")
        datum = decode_datum(raw)
        if not 0 <= datum.label < self.num_classes:
            raise RecordError(f"label {datum.label} outside [0, {self.num_classes})")
        return datum

    def _sample(self, out, raw, mode, seed_key, index, pos) -> int:
        raise NotImplementedError


class SmallImageSource(_RecordSource):
    """Raw-pixel 28x28 records (Fashion-MNIST): augmentation = flip + 2-pixel shift."""

    def __init__(self, cfg: DataConfig, path: str | Path, num_classes: int = 10):
        super().__init__(cfg, path, num_classes)
        self.sample_shape = (28, 28, 1)
        mean, std = SMALL_NORMALIZATION[cfg.name]
        self.mean, self.std = tuple(cfg.mean) or mean, tuple(cfg.std) or std
        self._rng_key = None

    def _sample(self, out, raw, mode, seed_key, index, pos) -> int:
        datum = self._datum(raw)
        pixels = datum.pixels()
        if pixels.shape != (1, 28, 28):
            raise RecordError(f"shape {pixels.shape}, expected (1, 28, 28)")
        img = pixels[0]
        if mode != "eval":
            # one generator per (seed, epoch, step, micro, rank) as before: cheap per sample
            if self._rng_key != seed_key or pos == 0:
                self._rng, self._rng_key = np.random.default_rng([*seed_key, 1]), seed_key
            flip, (dy, dx) = self._rng.random() < 0.5, self._rng.integers(-2, 3, size=2)
            img = _shift(img[:, ::-1] if flip else img, int(dy), int(dx))
        out[:, :, 0] = img
        return datum.label

    def normalize(self, pixels: np.ndarray) -> torch.Tensor:
        return transforms.normalize_batch(pixels, self.mean, self.std).contiguous()


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move the image by (dy, dx) pixels, filling with zeros."""
    h, w = img.shape
    out = np.zeros_like(img)
    out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
        img[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
    return out


class ImageNetSource(_RecordSource):
    """Encoded (JPEG/PNG) or raw 3-channel Caffe records -> crop x crop RGB samples."""

    def __init__(self, cfg: DataConfig, path: str | Path, num_classes: int):
        super().__init__(cfg, path, num_classes)
        self.sample_shape = (cfg.crop_size, cfg.crop_size, 3)
        self.mean = tuple(cfg.mean) or transforms.IMAGENET_MEAN
        self.std = tuple(cfg.std) or transforms.IMAGENET_STD
        classes = self.reader.sidecar("classes.txt")
        if classes is not None:
            n = len(classes.read_text().split())
            if n != num_classes:
                raise DataPathError(f"{classes} lists {n} classes but model.num_classes = "
                                    f"{num_classes}: set model.num_classes = {n}")

    def _sample(self, out, raw, mode, seed_key, index, pos) -> int:
        cfg = self.cfg
        datum = self._datum(raw)
        if datum.encoded:
            height, width = jpeg.image_size(datum.data)  # the header only: nothing decoded
            if height * width > cfg.max_image_pixels:
                raise RecordError(f"image header claims {width}x{height} pixels, over "
                                  f"data.max_image_pixels = {cfg.max_image_pixels}")
        else:
            height, width = datum.height, datum.width
        if min(height, width) < 1:
            raise RecordError(f"empty image {width}x{height}")
        # augmentation depends on (seed, epoch, sample) only: the same crops whatever the
        # number of ranks or workers, and a resumed run repeats them
        rng = np.random.default_rng([seed_key[0], seed_key[1], index, 2])
        if mode == "train":
            box = transforms.random_resized_crop_box(height, width, rng, scale=cfg.scale_range,
                                                     ratio=cfg.ratio_range)
        elif mode == "collapse":
            box = transforms.collapse_crop_box(height, width, rng, resize=cfg.eval_resize,
                                               crop=cfg.crop_size)
        else:
            box = transforms.centre_crop_box(height, width, resize=cfg.eval_resize,
                                             crop=cfg.crop_size)
        flip = mode != "eval" and bool(rng.random() < 0.5)
        if datum.encoded:
            # evaluation decodes as Caffe's OpenCV and Pillow do (accurate integer IDCT,
            # smooth upsampling, full resolution): the number compared with the papers. The
            # fast paths differ by up to ~140 levels on sharp edges; fine for augmentation
            fast_path = mode != "eval"
            factor = transforms.dct_factor(box, cfg.crop_size) \
                if cfg.dct_scaling and fast_path else 1
            image, region = jpeg.decode_box(datum.data, box, (height, width), factor=factor,
                                            fast=cfg.fast_decode and fast_path,
                                            region=cfg.region_decode)
        else:
            image = _raw_rgb(datum)
            region = transforms.scaled_box(box, 1.0, 1.0, width, height)
        transforms.resize_crop(image, region, cfg.crop_size, out, flip=flip)
        return datum.label

    def normalize(self, pixels: np.ndarray) -> torch.Tensor:
        return transforms.normalize_batch(pixels, self.mean, self.std)


def _raw_rgb(datum: Datum) -> np.ndarray:
    """Caffe raw records hold C x H x W pixels in OpenCV's BGR order (grey: one channel)."""
    chw = datum.pixels()
    if chw.shape[0] == 1:
        chw = np.repeat(chw, 3, axis=0)
    elif chw.shape[0] == 3:
        chw = chw[::-1]
    else:
        raise RecordError(f"{chw.shape[0]} channels; expected 1 or 3")
    return np.ascontiguousarray(chw.transpose(1, 2, 0))
