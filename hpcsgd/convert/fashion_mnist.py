"""Convert Fashion-MNIST (IDX files) into Caffe Datum LMDBs, one per split.

    hpcsgd convert fashion-mnist [--source /usr/share/datasets/fashion-mnist] \
        [--out data/fashion-mnist]

Writes <out>/train (60,000 records), <out>/test (10,000) and a held-out validation split of
the training images: <out>/val (10,000) and <out>/fit (the other 50,000), a fixed partition
(seeded permutation: val = its first 10,000 indices, fit the rest; each split keeps the
original index order). Tuned choices read val and train on fit; test gives final numbers only.
Raw 1x28x28 uint8 pixels, label 0-9. Each split is written to a temporary folder and renamed
when complete, so an interrupted conversion is redone, and a finished one is skipped
(idempotent).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from hpcsgd.store.datum import raw_datum
from hpcsgd.store.idx import read_idx
from hpcsgd.store.lmdb_store import LMDBWriter

SOURCES = {"train": "train", "test": "t10k", "fit": "train", "val": "train"}
"""Split -> the IDX file prefix it is drawn from."""
VAL_IMAGES, SPLIT_SEED = 10000, 0


def holdout(n: int, *, val_images: int = VAL_IMAGES, seed: int = SPLIT_SEED) -> dict:
    """Indices of the fit and val splits of n training images: a seeded permutation's first
    val_images indices are val, the rest fit; each sorted (original order). Pure function."""
    if not 0 < val_images < n:
        raise ValueError(f"val_images = {val_images} (--val-images): must be in (0, {n}), "
                         f"the training images")
    perm = np.random.default_rng(seed).permutation(n)
    return {"val": np.sort(perm[:val_images]), "fit": np.sort(perm[val_images:])}


def convert_split(source: Path, out: Path, split: str, *, val_images: int = VAL_IMAGES) -> int:
    """Records written, or -1 when the split was already converted."""
    target = out / split
    if (target / "data.mdb").is_file():
        return -1
    prefix = SOURCES[split]
    images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise ValueError(f"{source}: {len(images)} {prefix} images but {len(labels)} labels")
    index = holdout(len(images), val_images=val_images)[split] if split in ("fit", "val") \
        else np.arange(len(images))
    tmp = out / f".{split}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with LMDBWriter(tmp, map_size=1 << 32) as writer:
        for i in index:
            writer.put(raw_datum(images[i][None], int(labels[i])))
    os.replace(tmp, target)
    return len(index)


def main(argv: list[str] | None = None, prog: str = "hpcsgd convert fashion-mnist") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist",
                   help="folder with the four *-idx*-ubyte.gz files (default: %(default)s)")
    p.add_argument("--out", default="data/fashion-mnist",
                   help="folder for the train/test/fit/val LMDBs (default: %(default)s)")
    p.add_argument("--val-images", type=int, default=VAL_IMAGES,
                   help="training images held out as val (default: %(default)s; the "
                        "experiments' fit/val split assumes it)")
    args = p.parse_args(argv)
    source, out = Path(args.source), Path(args.out)
    if not source.is_dir():
        print(f"{prog}: error: Fashion-MNIST source folder {str(source)!r} does not exist "
              "(apt-get install dataset-fashion-mnist, or tools/setup.sh)", file=sys.stderr)
        return 2
    for split in SOURCES:
        try:
            out.mkdir(parents=True, exist_ok=True)
            n = convert_split(source, out, split, val_images=args.val_images)
        except (OSError, EOFError, ValueError) as e:  # a missing or truncated IDX file
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
        print(f"{out / split}: " + ("already converted" if n < 0 else f"wrote {n} records"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
