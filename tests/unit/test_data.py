import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest

from hpcsgd.config import DataConfig
from hpcsgd.data import CorruptDataError, SmallImageSource, TrainLoader, eval_batches
from hpcsgd.store.lmdb_store import LMDBReader
from hpcsgd.store.datum import decode_datum, record_key
from helpers import write_image_lmdb

ROOT = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _source(path, **kw):
    return SmallImageSource(DataConfig(path=str(path), augment=False, **kw), path / "train")


def test_batches_are_normalized_float_tensors(tmp_path):
    write_image_lmdb(tmp_path / "train", 16)
    loader = TrainLoader(_source(tmp_path), seed=0, rank=0, size=1, local_batch=8,
                         accumulation=1, augment=False)
    _, _, images, labels = next(loader.epoch(0))
    assert images.shape == (8, 1, 28, 28) and images.dtype.is_floating_point
    assert labels.dtype.is_signed and labels.shape == (8,)
    assert -1.0 < images.mean().item() < 1.5  # pixels scaled and centred, not raw 0-255


def test_augmentation_is_deterministic_per_step_and_resumes_exactly(tmp_path):
    write_image_lmdb(tmp_path / "train", 64)
    loader = TrainLoader(_source(tmp_path), seed=0, rank=0, size=1, local_batch=16,
                         accumulation=1, augment=True)
    first = list(loader.epoch(0))
    resumed = list(loader.epoch(0, start_step=2))  # resume at step 2
    assert [b[0] for b in resumed] == [2, 3]
    assert all(np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3])
               for a, b in zip(first[2:], resumed))
    plain = TrainLoader(_source(tmp_path), seed=0, rank=0, size=1, local_batch=16,
                        accumulation=1, augment=False)
    unaugmented = list(plain.epoch(0))
    assert first[0][2].shape == unaugmented[0][2].shape
    assert not np.array_equal(first[0][2], unaugmented[0][2])  # augmentation did something
    assert np.array_equal(first[0][3], unaugmented[0][3])      # same samples, same labels


def _corrupt(path, indices):
    env = lmdb.open(str(path), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for i in indices:
            txn.put(record_key(i), b"\x22\x7f garbage")  # length runs past the end
    env.close()


def test_corrupt_records_are_replaced_in_training_and_counted(tmp_path):
    labels = write_image_lmdb(tmp_path / "train", 40)
    _corrupt(tmp_path / "train", [3, 17])
    src = _source(tmp_path, max_corrupt_fraction=0.01)
    pixels = np.empty((20, 28, 28, 1), np.uint8)
    result = src.fill(pixels, list(range(20)), mode="train", seed_key=(0, 0, 0, 0, 0))
    # the batch keeps its size: record 3 is replaced by record 4, record 17 by 18
    assert len(result.labels) == 20 and all(result.valid)
    assert result.labels[3] == labels[4] and result.labels[17] == labels[18]
    assert [k for k, _ in result.corrupt] == ["00000003", "00000017"]
    assert result.records == 22


def test_corrupt_records_are_left_out_of_evaluation(tmp_path):
    write_image_lmdb(tmp_path / "train", 40)
    _corrupt(tmp_path / "train", [3, 17])
    src = _source(tmp_path, max_corrupt_fraction=0.01)
    count = sum(len(y) for _, y in eval_batches(src, rank=0, size=1, batch=16))
    assert count == 38 and src.stats.corrupt == 2 and src.stats.records == 40
    assert src.stats.corrupt_keys == ["00000003", "00000017"]


def test_label_out_of_range_is_a_bad_record(tmp_path):
    write_image_lmdb(tmp_path / "train", 20, classes=10)
    src = SmallImageSource(DataConfig(max_corrupt_fraction=0.5), tmp_path / "train",
                           num_classes=2)
    count = sum(len(y) for _, y in eval_batches(src, rank=0, size=1, batch=20))
    assert 0 < src.stats.corrupt == 20 - count
    pixels = np.empty((20, 28, 28, 1), np.uint8)
    result = src.fill(pixels, list(range(20)), mode="eval", seed_key=(0, 0))
    assert all("outside [0, 2)" in reason for _, reason in result.corrupt)


def test_too_many_corrupt_records_stop_naming_the_record(tmp_path):
    write_image_lmdb(tmp_path / "train", 40)
    _corrupt(tmp_path / "train", range(0, 40, 2))
    src = _source(tmp_path, max_corrupt_fraction=0.001)  # allows 1 per 1000 records
    with pytest.raises(CorruptDataError, match=r"record '00000002' is corrupt"):
        list(eval_batches(src, rank=0, size=1, batch=40))


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
