"""Checkpoints written atomically (temporary file, fsync, rename) with the config beside them,
and loaded without unpickling arbitrary objects (torch.load weights_only)."""
from __future__ import annotations

import os
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, write) -> None:
    """write(fileobj) into path.tmp, fsync, then rename over path: readers see old or new."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def save_checkpoint(path: Path, state: dict, config_toml: str) -> None:
    """state holds tensors, numbers, strings, lists and dicts only (weights_only loadable)."""
    atomic_write_bytes(Path(path), lambda f: torch.save(state, f))
    atomic_write_bytes(Path(path).with_suffix(".toml"), lambda f: f.write(config_toml.encode()))


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a checkpoint: "
                              f"{type(e).__name__}: {e}") from None
