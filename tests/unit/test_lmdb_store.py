import multiprocessing as mp

import pytest

from hpcsgd.store.lmdb_store import DataPathError, LMDBReader, LMDBWriter
from hpcsgd.store.datum import Datum, decode_datum
from helpers import write_image_lmdb


def test_reader_returns_records_in_key_order(tmp_path):
    labels = write_image_lmdb(tmp_path / "train", 30)
    reader = LMDBReader(tmp_path / "train")
    assert len(reader) == 30 and reader.key(29) == "00000029"
    assert [decode_datum(r).label for r in reader.get_many([5, 0, 29])] == \
        [labels[5], labels[0], labels[29]]


def test_missing_empty_or_non_lmdb_paths_are_named(tmp_path):
    with pytest.raises(DataPathError, match="nowhere/train"):
        LMDBReader(tmp_path / "nowhere" / "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataPathError, match="not an LMDB"):
        LMDBReader(tmp_path / "empty")
    LMDBWriter(tmp_path / "norecords").close()
    with pytest.raises(DataPathError, match="holds no records"):
        LMDBReader(tmp_path / "norecords")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.mdb").write_bytes(b"not an lmdb" * 100)
    with pytest.raises(DataPathError, match="junk.*cannot be read"):
        LMDBReader(tmp_path / "junk")


def test_arbitrary_caffe_keys_and_two_readers_of_one_path(tmp_path):
    with LMDBWriter(tmp_path / "db", map_size=1 << 24) as w:
        for i, name in enumerate(["n01440764/a.JPEG", "n01443537/b.JPEG"]):
            w.put(Datum(data=b"x", label=i, encoded=True), key=f"{i:08d}_{name}".encode())
    a, b = LMDBReader(tmp_path / "db"), LMDBReader(tmp_path / "db")
    assert a.key(1) == "00000001_n01443537/b.JPEG"
    assert decode_datum(b.get_many([1])[0]).label == 1


def _read_in_child(reader, queue):
    queue.put(decode_datum(reader.get_many([3])[0]).label)


def test_a_forked_process_reopens_the_environment(tmp_path):
    labels = write_image_lmdb(tmp_path / "train", 10)
    reader = LMDBReader(tmp_path / "train")
    reader.get_many([0])  # the parent has the environment open when it forks
    ctx = mp.get_context("fork")
    queue = ctx.SimpleQueue()
    child = ctx.Process(target=_read_in_child, args=(reader, queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and queue.get() == labels[3]
