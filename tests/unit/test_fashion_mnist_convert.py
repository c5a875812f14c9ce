"""hpcsgd convert fashion-mnist (hpcsgd/convert/fashion_mnist.py) on a tiny fake IDX set: the fit and val splits partition
the training images (every image once, original order), test and train are unchanged, and a
finished split is skipped."""
import gzip
from pathlib import Path

import numpy as np
import pytest

from hpcsgd.convert import fashion_mnist as conv
from hpcsgd.store.datum import decode_datum
from hpcsgd.store.lmdb_store import LMDBReader


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_source(root: Path, n_train: int, n_test: int) -> Path:
    root.mkdir()
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 100)):
        # image i is filled with (offset + i) % 256: a record says which image it was
        images = np.stack([np.full((28, 28), (offset + i) % 256) for i in range(n)])
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def _image_ids(path: Path) -> list[int]:
    reader = LMDBReader(path)
    records = [decode_datum(r) for r in reader.get_many(range(len(reader)))]
    assert all(d.label == d.data[0] % 10 for d in records)  # label travels with its image
    return [d.data[0] for d in records]


def test_fit_and_val_partition_the_training_images(tmp_path):
    source, out = _fake_source(tmp_path / "src", 40, 7), tmp_path / "out"
    out.mkdir()
    counts = {s: conv.convert_split(source, out, s, val_images=10) for s in conv.SOURCES}
    assert counts == {"train": 40, "test": 7, "fit": 30, "val": 10}
    fit, val = _image_ids(out / "fit"), _image_ids(out / "val")
    assert sorted(fit + val) == _image_ids(out / "train") == list(range(40))
    assert fit == sorted(fit) and val == sorted(val)  # original index order
    assert _image_ids(out / "test") == list(range(100, 107))
    assert list(conv.holdout(40, val_images=10)["val"]) == val  # fixed, seeded partition
    assert conv.convert_split(source, out, "val", val_images=10) == -1  # idempotent
    assert not list(out.glob(".*tmp*"))  # nothing left half-written


def test_holdout_is_a_fixed_partition():
    a, b = conv.holdout(60000), conv.holdout(60000)
    assert len(a["val"]) == 10000 and len(a["fit"]) == 50000
    assert np.array_equal(a["val"], b["val"])
    assert not set(a["val"]) & set(a["fit"])
    with pytest.raises(ValueError, match="val_images"):
        conv.holdout(10, val_images=10)
