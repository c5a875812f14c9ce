"""LMDB record stores: write Caffe Datum LMDBs, read them by index.

The reader opens the environment read-only and lock-free with readahead off (random access,
pages shared through the OS page cache by every process of a node), and lazily in each
process, because an LMDB environment must not cross a fork.
"""
from __future__ import annotations

import os
from pathlib import Path

import lmdb

from hpcsgd.records import Datum, encode_datum, record_key


class DataPathError(FileNotFoundError):
    """A data path that does not exist or is not an LMDB; the message names the path."""


def check_lmdb_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataPathError(f"data path {str(path)!r} does not exist")
    if not (path / "data.mdb").is_file():
        raise DataPathError(f"data path {str(path)!r} is not an LMDB folder (no data.mdb)")
    return path


class LMDBWriter:
    """Append records under sequential keys; commits every `commit_every` records."""

    def __init__(self, path: str | Path, *, map_size: int = 1 << 40, commit_every: int = 1000):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # map_size is address space, not disk: LMDB files grow only as data is written
        self.env = lmdb.open(str(self.path), map_size=map_size, subdir=True, sync=False,
                             writemap=False, meminit=False)
        self.commit_every = commit_every
        self.count = 0
        self.nbytes = 0
        self._txn = self.env.begin(write=True)

    def put(self, datum: Datum, key: bytes | None = None) -> None:
        value = encode_datum(datum)
        self._txn.put(key if key is not None else record_key(self.count), value)
        self.count += 1
        self.nbytes += len(value)
        if self.count % self.commit_every == 0:
            self._txn.commit()
            self._txn = self.env.begin(write=True)

    def close(self) -> None:
        if self._txn is not None:
            self._txn.commit()
            self._txn = None
            self.env.sync(True)
            self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:  # an interrupted conversion must not look complete: drop the open transaction
            self._txn.abort()
            self._txn = None
            self.env.close()


class LMDBReader:
    """Index-addressed read access to an LMDB of records (keys in their sorted order)."""

    def __init__(self, path: str | Path):
        self.path = check_lmdb_path(path)
        self._env = None
        self._pid = None
        with self._open().begin(buffers=False) as txn:
            self.keys: list[bytes] = list(txn.cursor().iternext(keys=True, values=False))
        if not self.keys:
            raise DataPathError(f"LMDB {str(self.path)!r} holds no records")

    def _open(self) -> lmdb.Environment:
        if self._env is None or self._pid != os.getpid():
            self._env = lmdb.open(str(self.path), readonly=True, lock=False, readahead=False,
                                  meminit=False, max_readers=512)
            self._pid = os.getpid()
        return self._env

    def __len__(self) -> int:
        return len(self.keys)

    def get_many(self, indices) -> list[bytes]:
        """Values of the given record indices, in order, from one read transaction."""
        with self._open().begin(buffers=False) as txn:
            return [txn.get(self.keys[i]) for i in indices]

    def key(self, index: int) -> str:
        return self.keys[index].decode(errors="replace")

    def __getstate__(self):  # worker processes reopen the environment themselves
        state = dict(self.__dict__)
        state["_env"] = None
        return state
