"""LMDB record stores: write Caffe Datum LMDBs, read them by index."""
from __future__ import annotations

import os
from pathlib import Path

import lmdb
import numpy as np

from hpcsgd.store.datum import Datum, encode_datum, record_key


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
        self.put_bytes(encode_datum(datum), key)

    def put_bytes(self, value: bytes, key: bytes | None = None) -> None:
        """A record's stored bytes as they are (tests write damaged records this way)."""
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


_ENVS: dict[str, tuple] = {}  # path -> (read-only environment, data.mdb inode), per process
_ENVS_PID = os.getpid()


def open_readonly(path: Path) -> lmdb.Environment:
    """The process's read-only environment of `path`, shared by every reader of it.

    py-lmdb refuses to open one path twice in a process, and an environment must not cross
    a fork: a forked child drops (closes) the handles it inherited and opens its own."""
    global _ENVS_PID
    if _ENVS_PID != os.getpid():
        for env, _ in _ENVS.values():
            env.close()  # unmaps this process's copy of the mapping only
        _ENVS.clear()
        _ENVS_PID = os.getpid()
    key = str(path.resolve())
    try:
        inode = os.stat(Path(key) / "data.mdb").st_ino
    except OSError as e:
        raise DataPathError(f"LMDB {key!r} cannot be read: {e}") from None
    if key in _ENVS and _ENVS[key][1] != inode:  # the folder was replaced (a re-conversion)
        _ENVS.pop(key)[0].close()
    if key not in _ENVS:
        _ENVS[key] = (lmdb.open(key, readonly=True, lock=False, readahead=False, meminit=False,
                                max_readers=512), inode)
    return _ENVS[key][0]


class LMDBReader:
    """Index-addressed read access to an LMDB of records (keys in their sorted order).

    The environment is opened read-only and lock-free with readahead off (random access),
    lazily in each process; its pages are shared through the OS page cache by every process
    of a node. Keys live in one fixed-width numpy array, not a list of 1.28M Python objects:
    forked workers share its pages, and reference counting never copies them.
    """

    def __init__(self, path: str | Path):
        self.path = check_lmdb_path(path)
        try:
            with open_readonly(self.path).begin(buffers=False) as txn:
                keys = list(txn.cursor().iternext(keys=True, values=False))
        except lmdb.Error as e:
            raise DataPathError(f"LMDB {str(self.path)!r} cannot be read: {e}") from None
        if not keys:
            raise DataPathError(f"LMDB {str(self.path)!r} holds no records")
        if any(k.endswith(b"\0") for k in keys):  # numpy bytes arrays drop trailing NULs
            raise DataPathError(f"LMDB {str(self.path)!r}: keys ending in NUL are not supported")
        self.keys = np.array(keys, dtype=np.bytes_)

    def __len__(self) -> int:
        return len(self.keys)

    def get_many(self, indices) -> list[bytes | None]:
        """Values of the given record indices, in order, from one read transaction."""
        with open_readonly(self.path).begin(buffers=False) as txn:
            return [txn.get(self.keys[i].tobytes()) for i in indices]

    def key(self, index: int) -> str:
        return self.keys[index].tobytes().decode(errors="replace")

    def sidecar(self, name: str) -> Path | None:
        """A file the converter wrote beside data.mdb (classes.txt, summary.json), if any."""
        path = self.path / name
        return path if path.is_file() else None
