"""The soak's view of a run's checkpoint folder: what a killed writer left there (judged by
tools/soak/judge.py), the damage a broken file system does to a checkpoint (truncation), and
a file system that runs out of space (a small tmpfs mounted over the round's run folder)."""
from __future__ import annotations

import random
import subprocess
from contextlib import contextmanager
from pathlib import Path

from hpcsgd.run.checkpoint import (CheckpointError, load_checkpoint,
                                   newest_loadable_checkpoint, step_checkpoints)


def inspect_checkpoints(folder: Path) -> dict:
    """Every step checkpoint loaded with hpcsgd's own load_checkpoint: `torn` lists those that
    do not load (an atomic writer never leaves one); `stray_tmp` the temporary files a killed
    writer left; `auto_choice` the file checkpoint.resume = "auto" would take (it must be the
    newest step file, never a temporary one)."""
    files = step_checkpoints(folder)
    torn = []
    for path in files:
        try:
            load_checkpoint(path)
        except CheckpointError:
            torn.append(path.name)
    try:
        choice = newest_loadable_checkpoint(folder, warn=lambda path, reason: None)
    except CheckpointError:
        choice = None
    return {"files": [p.name for p in files], "torn": torn,
            "stray_tmp": sorted(p.name for p in folder.glob(".step_*.tmp*"))
            if folder.is_dir() else [],
            "newest_loads": bool(files) and files[0].name not in torn,
            "auto_choice": choice[0].name if choice else None}


def checkpoints_sound(view: dict) -> bool:
    """No torn step file, and resume=auto takes the newest one (if any exists)."""
    newest = view["files"][0] if view["files"] else None
    return not view["torn"] and view["auto_choice"] == newest


def truncate_newest(folder: Path, rng: random.Random) -> dict:
    """Cut the newest step checkpoint to a random length, as a file system that loses a
    file's tail would leave it; returns what was cut and the checkpoint before it."""
    files = step_checkpoints(folder)
    newest = files[0]
    size = newest.stat().st_size
    cut = rng.randrange(0, size)
    with open(newest, "r+b") as f:
        f.truncate(cut)
    return {"truncated": str(newest), "size": size, "cut_to": cut,
            "previous": str(files[1]) if len(files) > 1 else None}


@contextmanager
def small_fs(mount: Path, size_bytes: int):
    """A tmpfs of size_bytes mounted at `mount` (needs root or CAP_SYS_ADMIN), unmounted
    after. Yields (mount, None), or (None, why) when mounting is refused: the round is then
    skipped, saying why."""
    mount.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs",
                          str(mount)], capture_output=True, text=True)
    if res.returncode != 0:
        yield None, res.stderr.strip() or f"mount exit {res.returncode}"
        return
    try:
        yield mount, None
    finally:
        # lazily when busy: a process of the job that survived would otherwise keep it
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
