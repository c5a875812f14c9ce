#!/usr/bin/env python3
"""Images/s per decode core: our training and evaluation transforms against plain Pillow.

    flock /tmp/hpcsgd-bench.lock .venv/bin/python tools/bench_decode.py [--images 100] [--rounds 15]

Input: realistic ImageNet-sized JPEGs (about 500x375, quality 90) cut from the 20 ILSVRC2012
photographs of the foolbox wheel (tools/imagenet_samples.py), stored as Caffe Datum records
in a temporary LMDB. One process, one thread: the numbers are per decode core. Every pipeline
reads the record from the LMDB and parses the Datum, then:

- pillow: the usual torchvision pipeline as torchvision's code runs it (default_loader:
  Image.open + convert RGB; RandomResizedCrop: crop then bilinear resize to 224;
  RandomHorizontalFlip: transpose; ToTensor: copy, CHW contiguous, float /255; Normalize:
  clone, sub_, div_); eval: Resize(256) of the shorter side, CenterCrop(224), ToTensor,
  Normalize. Same crop boxes as ours (same random generator and box function).
- ours: what a decode worker runs with the default configuration
  (hpcsgd.data.sources.ImageNetSource.fill: TurboJPEG 3 region decode of the crop box with
  DCT scaling where the crop allows and the fast IDCT (hpcsgd/data/turbo.py), torch's uint8
  antialiased resize of the crop box, flip into the
  uint8 batch) plus the training process's share (normalize_batch to float channels_last),
  charged per image. Variants: whole-image decode (data.region_decode = false: simplejpeg
  decodes the whole image), no DCT scaling (never triggers for a random-resized crop of a
  500x375 image: the crop would need 448 pixels both ways), accurate IDCT.

Pipelines are timed in interleaved rounds (so machine load hits all alike) and the median
round is reported, with the ratio to the Pillow baseline measured in the same run.
"""
from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import imagenet_samples  # noqa: E402
from hpcsgd.config import DataConfig  # noqa: E402
from hpcsgd.data import turbo  # noqa: E402
from hpcsgd.data.sources import ImageNetSource  # noqa: E402
from hpcsgd.data.transforms import IMAGENET_MEAN, IMAGENET_STD, random_resized_crop_box  # noqa: E402
from hpcsgd.store.lmdb_store import LMDBWriter  # noqa: E402
from hpcsgd.store.datum import Datum, decode_datum  # noqa: E402

BATCH = 32
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _to_tensor_normalize(im: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor then Normalize, as its code does them: copy the pixels, CHW
    contiguous, float /255; clone, sub_(mean), div_(std)."""
    t = torch.from_numpy(np.array(im, np.uint8, copy=True)).view(im.height, im.width, 3)
    t = t.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    return t.clone().sub_(MEAN).div_(STD)


def pillow_train(raw: bytes, rng: np.random.Generator) -> torch.Tensor:
    """default_loader + RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize."""
    im = Image.open(io.BytesIO(decode_datum(raw).data)).convert("RGB")
    box = random_resized_crop_box(im.height, im.width, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    im = im.crop((box.x, box.y, box.x + box.w, box.y + box.h))  # F.resized_crop: crop, resize
    im = im.resize((224, 224), Image.BILINEAR)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _to_tensor_normalize(im)


def pillow_eval(raw: bytes, rng) -> torch.Tensor:
    """default_loader + Resize(256) + CenterCrop(224) + ToTensor + Normalize."""
    im = Image.open(io.BytesIO(decode_datum(raw).data)).convert("RGB")
    k = 256 / min(im.size)
    im = im.resize((round(im.width * k), round(im.height * k)), Image.BILINEAR)
    x, y = round((im.width - 224) / 2), round((im.height - 224) / 2)
    return _to_tensor_normalize(im.crop((x, y, x + 224, y + 224)))


def pillow_decode(raw: bytes, rng) -> None:
    Image.open(io.BytesIO(decode_datum(raw).data)).convert("RGB").load()


def simplejpeg_decode(raw: bytes, rng) -> None:
    simplejpeg.decode_jpeg(decode_datum(raw).data)


def build_lmdb(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    photos = imagenet_samples.fetch()
    with LMDBWriter(path, map_size=1 << 30) as w:
        for i in range(n):
            data = next(imagenet_samples.variants(photos[i % len(photos)][0], 1, rng))
            w.put(Datum(channels=3, data=data, label=i % 20, encoded=True))


def per_image(reader, fn):
    """A function timing one pass of `fn(raw, rng)` over all records; returns img/s."""
    def run() -> float:
        raws = reader.get_many(range(len(reader)))
        rng = np.random.default_rng(1)
        t = time.perf_counter()
        for raw in raws:
            fn(raw, rng)
        return len(raws) / (time.perf_counter() - t)
    return run


def ours(source, mode: str):
    """Worker fill in batches of 32 + the training process's normalisation, img/s."""
    def run() -> float:
        n = len(source)
        out = np.empty((BATCH, *source.sample_shape), np.uint8)
        t = time.perf_counter()
        for start in range(0, n, BATCH):
            idx = list(range(start, min(start + BATCH, n)))
            source.fill(out[:len(idx)], idx, mode=mode, seed_key=(0, 0))
            source.normalize(out[:len(idx)])
        return n / (time.perf_counter() - t)
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # per decode core
    with tempfile.TemporaryDirectory() as tmp:
        build_lmdb(Path(tmp) / "db", args.images)

        def source(**kw):
            return ImageNetSource(DataConfig(name="imagenet", **kw), Path(tmp) / "db", 20)

        src = source()
        sizes = [decode_datum(r).data for r in src.reader.get_many(range(len(src)))]
        dims = [simplejpeg.decode_jpeg_header(d)[:2] for d in sizes]
        pipelines = {
            "pillow train (torchvision-style)": per_image(src.reader, pillow_train),
            "ours train": ours(src, "train"),
            "ours train, whole-image decode": ours(source(region_decode=False), "train"),
            "ours train, no DCT scaling": ours(source(dct_scaling=False), "train"),
            "ours train, accurate IDCT": ours(source(fast_decode=False), "train"),
            "ours collapse": ours(src, "collapse"),
            "pillow eval (resize 256, crop 224)": per_image(src.reader, pillow_eval),
            "ours eval": ours(src, "eval"),
            "decode only: pillow": per_image(src.reader, pillow_decode),
            "decode only: simplejpeg": per_image(src.reader, simplejpeg_decode),
        }
        for run in pipelines.values():  # warm-up: page cache, lazy imports
            run()
        rates = {name: [] for name in pipelines}
        for _ in range(args.rounds):
            for name, run in pipelines.items():
                rates[name].append(run())
    median = {name: statistics.median(r) for name, r in rates.items()}
    # ratios of adjacent passes in the same round, so a change of machine load between
    # rounds cancels; the median over rounds is reported
    ratio = {kind: statistics.median(o / b for o, b in zip(rates[ours_name], rates[base]))
             for kind, ours_name, base in (("train", "ours train", "pillow train (torchvision-style)"),
                                           ("eval", "ours eval", "pillow eval (resize 256, crop 224)"))}
    print(f"region decode: {'TurboJPEG 3 at ' + turbo._find_library() if turbo.available() else 'not available'}")
    print(f"{args.images} JPEGs, median {statistics.median(len(d) for d in sizes) / 1024:.0f} KiB, "
          f"median size {int(statistics.median(w for _, w in dims))}x"
          f"{int(statistics.median(h for h, _ in dims))}, quality 90; 1 thread; "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'pipeline':38s} {'img/s/core':>10s} {'ms/img':>7s}")
    for name, rate in median.items():
        print(f"{name:38s} {rate:10.0f} {1e3 / rate:7.2f}")
    train = ratio["train"]
    print(f"ratio ours / pillow (median of per-round ratios): train {train:.2f}x, eval "
          f"{ratio['eval']:.2f}x (goal >= 2x for train){'' if train >= 2 else '  GOAL NOT MET'}")
    return 0 if math.isfinite(train) else 1


if __name__ == "__main__":
    sys.exit(main())
