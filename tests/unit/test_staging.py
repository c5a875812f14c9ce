import json

import pytest
from mpi4py import MPI

from hpcsgd.data import staging
from hpcsgd.store.lmdb_store import LMDBReader
from helpers import write_image_lmdb

GIB = 1 << 30


def test_check_fits_names_the_limit_that_refuses():
    assert staging.check_fits(GIB, "/dev/shm", available=20 * GIB, total=24 * GIB,
                              free_space=12 * GIB) is None
    assert "do not fit in /dev/shm (0.50 GiB free)" in staging.check_fits(
        GIB, "/dev/shm", available=20 * GIB, total=24 * GIB, free_space=GIB // 2)
    why = staging.check_fits(10 * GIB, "/dev/shm", available=11 * GIB, total=24 * GIB,
                             free_space=12 * GIB)
    assert "reserve of 2.40 GiB exceed the 11.00 GiB of memory available" in why


def test_stage_copies_once_reuses_and_removes(tmp_path):
    labels = write_image_lmdb(tmp_path / "src" / "train", 20)
    (tmp_path / "src" / "train" / "classes.txt").write_text("a\nb\n")
    root = tmp_path / "shm"
    (path,) = staging.stage_lmdbs([tmp_path / "src" / "train"], root, MPI.COMM_SELF, keep=True)
    assert path.parent == root and (path / "classes.txt").read_text() == "a\nb\n"
    assert not (path / "lock.mdb").exists()  # per-host lock state is not data
    assert json.loads((path / "staged-from.json").read_text())["bytes"] > 0
    assert LMDBReader(path).get_many([4]) == LMDBReader(tmp_path / "src" / "train").get_many([4])
    mtime = (path / "data.mdb").stat().st_mtime_ns
    staged, copied = staging.stage_copy(tmp_path / "src" / "train", root)
    assert staged == path and not copied and (path / "data.mdb").stat().st_mtime_ns == mtime
    staging._remove([path])
    assert not path.exists() and len(labels) == 20


def test_staging_refuses_clearly_when_memory_is_short(tmp_path, monkeypatch):
    write_image_lmdb(tmp_path / "src" / "train", 20)
    monkeypatch.setattr(staging, "mem_available", lambda: 1000)
    with pytest.raises(staging.StagingError, match=r"cannot stage .*src/train on .*memory "
                                                    r"available; free memory or set "
                                                    r'data.stage_dir = ""'):
        staging.stage_lmdbs([tmp_path / "src" / "train"], tmp_path / "shm", MPI.COMM_SELF,
                            keep=False)
    assert not list((tmp_path / "shm").glob("*"))  # nothing half-copied left behind
