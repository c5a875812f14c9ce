#!/usr/bin/env python3
"""Convert Fashion-MNIST (IDX files) into Caffe Datum LMDBs, one per split.

    .venv/bin/python tools/fashion_mnist_to_lmdb.py \
        --source /usr/share/datasets/fashion-mnist --out data/fashion-mnist

Writes <out>/train (60,000 records) and <out>/test (10,000); raw 1x28x28 uint8 pixels, label
0-9. Each split is written to a temporary folder and renamed when complete, so an interrupted
conversion is redone, and a finished one is skipped (idempotent).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpcsgd.idx import read_idx  # noqa: E402
from hpcsgd.lmdb_store import LMDBWriter  # noqa: E402
from hpcsgd.records import raw_datum  # noqa: E402

SPLITS = {"train": "train", "test": "t10k"}


def convert_split(source: Path, out: Path, split: str) -> int:
    target = out / split
    if (target / "data.mdb").is_file():
        return -1
    prefix = SPLITS[split]
    images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise ValueError(f"{source}: {len(images)} {split} images but {len(labels)} labels")
    tmp = out / f".{split}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with LMDBWriter(tmp, map_size=1 << 32) as writer:
        for image, label in zip(images, labels):
            writer.put(raw_datum(image[None], int(label)))
    os.replace(tmp, target)
    return len(images)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", default="data/fashion-mnist")
    args = p.parse_args(argv)
    source, out = Path(args.source), Path(args.out)
    if not source.is_dir():
        sys.exit(f"error: Fashion-MNIST source folder {str(source)!r} does not exist "
                 "(apt-get install dataset-fashion-mnist, or tools/setup.sh)")
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        n = convert_split(source, out, split)
        print(f"{out / split}: " + ("already converted" if n < 0 else f"wrote {n} records"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
