import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest

from hpcsgd.config import DataConfig
from hpcsgd.data import CorruptDataError, SmallImageSource, TrainLoader, eval_batches
from hpcsgd.lmdb_store import DataPathError, LMDBReader
from hpcsgd.records import decode_datum, record_key
from helpers import write_image_lmdb

ROOT = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _source(path, **kw):
    return SmallImageSource(DataConfig(path=str(path), augment=False, **kw), "train")


def test_reader_returns_records_in_key_order(tmp_path):
    labels = write_image_lmdb(tmp_path / "train", 30)
    reader = LMDBReader(tmp_path / "train")
    assert len(reader) == 30
    assert [decode_datum(r).label for r in reader.get_many([5, 0, 29])] == \
        [labels[5], labels[0], labels[29]]


def test_missing_or_non_lmdb_path_is_named(tmp_path):
    with pytest.raises(DataPathError, match="nowhere/train"):
        LMDBReader(tmp_path / "nowhere" / "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataPathError, match="not an LMDB"):
        LMDBReader(tmp_path / "empty")


def test_batches_are_normalized_float_tensors(tmp_path):
    write_image_lmdb(tmp_path / "train", 16)
    images, labels = _source(tmp_path).load(range(8), augment=False)
    assert images.shape == (8, 1, 28, 28) and images.dtype.is_floating_point
    assert labels.dtype.is_signed and labels.shape == (8,)
    assert -1.0 < images.mean().item() < 1.5  # pixels scaled and centred, not raw 0-255


def test_augmentation_is_deterministic_per_step_and_keeps_shape(tmp_path):
    write_image_lmdb(tmp_path / "train", 64)
    src = _source(tmp_path)
    loader = TrainLoader(src, seed=0, rank=0, size=1, local_batch=16, accumulation=1,
                         augment=True)
    first = [b[2] for b in loader.epoch(0)]
    resumed = [b[2] for b in loader.epoch(0, start_step=2)]  # resume at step 2
    assert all(np.array_equal(a, b) for a, b in zip(first[2:], resumed))
    plain, _ = src.load(loader_indices := range(16), augment=False)
    assert first[0].shape == plain.shape


def _corrupt(path, indices):
    env = lmdb.open(str(path), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for i in indices:
            txn.put(record_key(i), b"\x22\x7f garbage")  # length runs past the end
    env.close()


def test_corrupt_records_are_skipped_and_counted(tmp_path):
    write_image_lmdb(tmp_path / "train", 40)
    _corrupt(tmp_path / "train", [3, 17])
    src = _source(tmp_path, max_corrupt_fraction=0.01)
    images, labels = src.load(range(20), augment=False)
    assert len(labels) == 18 and src.stats.corrupt == 2 and src.stats.records == 20


def test_too_many_corrupt_records_stop_naming_the_record(tmp_path):
    write_image_lmdb(tmp_path / "train", 40)
    _corrupt(tmp_path / "train", range(0, 40, 2))
    src = _source(tmp_path, max_corrupt_fraction=0.001)  # allows 1 per 1000 records
    with pytest.raises(CorruptDataError, match=r"record '00000002' is corrupt"):
        src.load(range(40), augment=False)


def test_eval_batches_cover_the_shard_exactly(tmp_path):
    write_image_lmdb(tmp_path / "train", 37)
    src = _source(tmp_path)
    counts = [sum(len(y) for _, y in eval_batches(src, rank=r, size=3, batch=5)) for r in range(3)]
    assert sum(counts) == 37


@pytest.mark.skipif(not FMNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_converter_writes_the_real_data(tmp_path):
    out = tmp_path / "fm"
    cmd = [sys.executable, str(ROOT / "tools/fashion_mnist_to_lmdb.py"), "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "wrote 60000" in first and "wrote 10000" in first
    assert "already converted" in subprocess.run(cmd, capture_output=True, text=True,
                                                 check=True).stdout  # idempotent
    test = LMDBReader(out / "test")
    d = decode_datum(test.get_many([0])[0])
    assert len(test) == 10000 and (d.channels, d.height, d.width) == (1, 28, 28)
    assert d.label == 9  # the first t10k image is an ankle boot
