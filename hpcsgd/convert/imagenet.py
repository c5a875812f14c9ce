"""Convert an ImageNet-style folder into Caffe-Datum LMDBs of encoded JPEGs, one per split.

    hpcsgd convert imagenet --src /data/ILSVRC2012 --out data/imagenet \
        [--splits train val] [--val-labels val.txt] [--resize 256] [--workers 4]

Input: `<src>/train/<wnid>/*.JPEG`; `<src>/val/` either per-class folders or flat files with
`--val-labels` (lines "<file name> <wnid or class index>", e.g. Caffe's val.txt).
Output: `<out>/<split>/` = data.mdb (keys "%08d_<wnid>/<file>" as Caffe's convert_imageset
writes them, values Datum{encoded, label, channels, height, width}), classes.txt (the wnids
in class-index order: sorted folder names, so the index is deterministic) and summary.json
(records, bytes, count per class, unreadable files). JPEG bytes are stored as they are; with
`--resize N` images whose shorter side exceeds N are resized to N and re-encoded
(`--quality`). `--workers` processes read (and resize) files in parallel, one writer keeps the
order. Each split is written to a temporary folder and renamed when complete, so an
interrupted conversion is redone and a finished one is skipped (idempotent).
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from hpcsgd.data.jpeg import ImageDecodeError, image_size
from hpcsgd.store.datum import Datum
from hpcsgd.store.lmdb_store import LMDBWriter

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


class InputError(Exception):
    """A source folder or labels file that cannot be converted; the message names it."""


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def class_index(train_dir: Path) -> list[str]:
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"{train_dir} has no class folders (<wnid>/*.JPEG)")
    return classes


def list_split(split_dir: Path, classes: list[str], labels_file: Path | None):
    """[(path, label, key suffix)] in a deterministic order (class, then file name)."""
    index = {wnid: i for i, wnid in enumerate(classes)}
    subdirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if subdirs:
        items = []
        for d in subdirs:
            if d.name not in index:
                raise InputError(f"{d} is not one of the {len(classes)} training classes")
            items += [(p, index[d.name], f"{d.name}/{p.name}") for p in _images(d)]
        return items
    if labels_file is None:
        raise InputError(f"{split_dir} has no class folders; give --val-labels FILE")
    items = []
    if not labels_file.is_file():
        raise InputError(f"labels file {str(labels_file)!r} (--val-labels) does not exist")
    for n, line in enumerate(labels_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if len(line.split()) < 2:
            raise InputError(f"{labels_file}:{n}: expected '<file name> <class>', got {line!r}")
        name, label = line.split()[:2]
        label = int(label) if label.isdigit() else index.get(label)
        if label is None or not 0 <= label < len(classes):
            raise InputError(f"{labels_file}:{n}: unknown class {line.split()[1]!r}")
        items.append((split_dir / name, label, name))
    return sorted(items, key=lambda t: t[2])


def prepare(item, resize: int, quality: int):
    """(key suffix, label, bytes, height, width, error) for one file, in a worker process."""
    path, label, suffix = item
    try:
        data = path.read_bytes()
        h, w = image_size(data)
        if resize and min(h, w) > resize:
            data, h, w = _resized(data, resize, quality)
        return suffix, label, data, h, w, None
    except (OSError, ImageDecodeError) as e:
        return suffix, label, None, 0, 0, f"{path}: {e}"


def _resized(data: bytes, side: int, quality: int):
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        k = side / min(im.size)
        size = (max(side, round(im.width * k)), max(side, round(im.height * k)))
        im.draft("RGB", size)  # DCT-scaled decode when it halves or more
        out = im.convert("RGB").resize(size, Image.BICUBIC)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    return buf.getvalue(), size[1], size[0]


class Progress:
    """A one-line progress bar on stderr, redrawn at most twice a second."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.t0, self.shown = total, label, time.time(), 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.time()
        if not force and (now - self.shown < 0.5 or done == self.total):
            return  # the last state is drawn once, by the forced call
        self.shown = now
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate else 0
        bar = "#" * int(30 * done / max(self.total, 1))
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{self.total} "
                         f"{rate:7.0f} img/s  eta {eta:5.0f} s")
        if force:
            sys.stderr.write("\n")
        sys.stderr.flush()


def convert_split(items, classes, target: Path, *, resize: int, quality: int, workers: int):
    tmp = target.parent / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    counts, skipped, nbytes = Counter(), [], 0
    progress = Progress(len(items), target.name)
    args = [(item, resize, quality) for item in items]
    with LMDBWriter(tmp, commit_every=1000) as writer:
        pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
        try:
            results = pool.imap(_prepare_star, args, chunksize=32) if pool else map(_prepare_star, args)
            for n, (suffix, label, data, h, w, error) in enumerate(results, 1):
                if error:
                    skipped.append(error)
                else:
                    key = f"{writer.count:08d}_{suffix}".encode()
                    writer.put(Datum(channels=3, height=h, width=w, data=data, label=label,
                                     encoded=True), key=key)
                    counts[classes[label]] += 1
                    nbytes += len(data)
                progress.update(n)
        finally:
            if pool:
                pool.close()
                pool.join()
    progress.update(len(items), force=True)
    (tmp / "classes.txt").write_text("\n".join(classes) + "\n")
    summary = {"records": sum(counts.values()), "bytes": nbytes, "classes": len(classes),
               "per_class": {c: counts[c] for c in classes}, "skipped": skipped,
               "resize": resize or None}
    (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
    os.replace(tmp, target)
    return summary


def _prepare_star(args):
    return prepare(*args)


def main(argv: list[str] | None = None, prog: str = "hpcsgd convert imagenet") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="folder with train/ (and val/)")
    p.add_argument("--out", type=Path, required=True, help="folder for the split LMDBs")
    p.add_argument("--splits", nargs="+", default=["train", "val"],
                   help="sub-folders of --src to convert (default: train val)")
    p.add_argument("--val-labels", type=Path, help="labels of a flat val/ folder")
    p.add_argument("--resize", type=int, default=0, help="shorter side limit (0 = keep bytes)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality when re-encoding")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="reader processes (default: the CPU count)")
    p.add_argument("--force", action="store_true", help="rewrite splits already converted")
    args = p.parse_args(argv)
    try:
        convert(args)
    except (InputError, OSError) as e:  # OSError: an --out that is a file, a full disk, ...
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


def convert(args) -> None:
    """Every split of args.splits; raises InputError before writing anything for a missing
    folder or a bad labels file."""
    if not (args.src / "train").is_dir():
        raise InputError(f"{args.src / 'train'} does not exist (expected train/<wnid>/*.JPEG)")
    classes = class_index(args.src / "train")
    missing = [s for s in args.splits if not (args.src / s).is_dir()]
    if missing:
        raise InputError(f"split folder {args.src / missing[0]} does not exist")
    # every split listed (and its labels checked) before any is written
    todo = []
    for split in args.splits:
        target = args.out / split
        if (target / "data.mdb").is_file() and not args.force:
            print(f"{target}: already converted")
            continue
        todo.append((target, list_split(args.src / split, classes,
                                        args.val_labels if split != "train" else None)))
    args.out.mkdir(parents=True, exist_ok=True)
    for target, items in todo:
        shutil.rmtree(target, ignore_errors=True)
        s = convert_split(items, classes, target, resize=args.resize, quality=args.quality,
                          workers=args.workers)
        per = s["per_class"].values()
        print(f"{target}: wrote {s['records']} records, {s['bytes'] / 2**20:.1f} MiB, "
              f"{s['classes']} classes ({min(per)}-{max(per)} per class), "
              f"{len(s['skipped'])} unreadable files skipped")
        for line in s["skipped"][:10]:
            print(f"  skipped {line}")


if __name__ == "__main__":
    sys.exit(main())
