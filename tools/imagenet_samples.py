#!/usr/bin/env python3
"""Real ImageNet photographs for tests and benchmarks, and ImageNet-style folders made from them.

    .venv/bin/python tools/imagenet_samples.py --folder data/imagenet-folder --per-photo 10

1. fetch: the `foolbox` wheel (PyPI) ships 20 labelled ILSVRC2012 JPEGs in foolbox/data/
   (imagenet_<i>_<label>.jpg). We download the wheel with pip (no install, no dependencies)
   and extract only those files into data/imagenet-samples/ (idempotent).
2. folder: an ImageNet-style tree `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG` of realistic
   ImageNet-sized JPEGs (about 500x375 or 375x500, quality 90, 4:2:0) cut from the photos
   by random crops, flips and rescales. The wnids are synthetic ("n%08d" % label: the wheel
   carries label indices, not WordNet ids).
"""
from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "imagenet-samples"
FOOLBOX = "foolbox==3.3.4"
NAME = re.compile(r"imagenet_(\d+)_(\d+)\.jpg$")


def fetch(out: Path = SAMPLES) -> list[tuple[Path, int]]:
    """The 20 photographs as (path, label), downloading them once."""
    if len(list(out.glob("imagenet_*.jpg"))) < 20:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, FOOLBOX]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"cannot download {FOOLBOX} from PyPI for its sample "
                                   f"photographs: {done.stderr.strip()[-500:]}")
            (wheel,) = Path(tmp).glob("foolbox-*.whl")
            with zipfile.ZipFile(wheel) as z:
                for name in z.namelist():
                    if NAME.search(name):
                        (out / Path(name).name).write_bytes(z.read(name))
    photos = sorted((p, int(NAME.search(p.name).group(2))) for p in out.glob("imagenet_*.jpg"))
    if len(photos) != 20:
        raise RuntimeError(f"{out}: expected 20 sample photographs, found {len(photos)}")
    return photos


def variants(photo: Path, count: int, rng: np.random.Generator, *, quality: int = 90):
    """`count` ImageNet-sized JPEGs cut from one photograph (landscape 500x375 mostly,
    some portrait 375x500), as bytes."""
    from PIL import Image
    with Image.open(photo) as im:
        im = im.convert("RGB")
        for _ in range(count):
            portrait = rng.random() < 0.25
            size = (375, 500) if portrait else (500, 375)
            aspect = size[0] / size[1]
            frac = rng.uniform(0.45, 1.0)  # fraction of the photo's width or height kept
            w = min(im.width, im.height * aspect) * frac
            h = w / aspect
            x = rng.uniform(0, im.width - w)
            y = rng.uniform(0, im.height - h)
            out = im.resize(size, Image.BICUBIC, box=(x, y, x + w, y + h))
            if rng.random() < 0.5:
                out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            buf = io.BytesIO()
            out.save(buf, "JPEG", quality=quality)
            yield buf.getvalue()


def make_folder(root: Path, *, per_photo: int, val_per_photo: int = 2, seed: int = 0) -> Path:
    """train/<wnid>/*.JPEG and val/<wnid>/*.JPEG under `root` (skipped if already there)."""
    marker = root / ".complete"
    if marker.is_file() and marker.read_text() == f"{per_photo} {val_per_photo} {seed}":
        return root
    rng = np.random.default_rng(seed)
    for i, (photo, label) in enumerate(fetch()):
        for split, count in (("train", per_photo), ("val", val_per_photo)):
            folder = root / split / f"n{label:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k, data in enumerate(variants(photo, count, rng)):
                (folder / f"{split}_{i:02d}_{k:04d}.JPEG").write_bytes(data)
    marker.write_text(f"{per_photo} {val_per_photo} {seed}")
    return root


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--folder", type=Path, help="also build an ImageNet-style folder here")
    p.add_argument("--per-photo", type=int, default=10, help="training JPEGs per photograph")
    p.add_argument("--val-per-photo", type=int, default=2)
    args = p.parse_args(argv)
    photos = fetch()
    print(f"{SAMPLES}: {len(photos)} photographs")
    if args.folder:
        make_folder(args.folder, per_photo=args.per_photo, val_per_photo=args.val_per_photo)
        n = sum(1 for _ in args.folder.glob("*/*/*.JPEG"))
        print(f"{args.folder}: {n} JPEGs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
