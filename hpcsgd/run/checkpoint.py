"""Checkpoints: what a run needs to continue exactly, written atomically by rank 0.

Contents: model parameters, optimizer state (identical on every rank), the progress (global
step, from which the schedule position and the sampler position follow: both are pure
functions of it), each rank's own RNG state and floating buffers (BatchNorm running
statistics are per rank), and the config as TOML, also written beside the file.

Writing: temporary file, fsync, rename, fsync of the folder, so a reader (or a resumed run)
sees the previous checkpoint or the new one, never a torn file, even if the writer is killed.
A write that fails (a full file system) removes its temporary file and raises CheckpointError
naming the file and the cause. Loading: ``torch.load(weights_only=True)``: tensors and plain
containers only, no arbitrary unpickling. Resuming with "auto" takes the newest step
checkpoint that loads: a file system can still damage a complete one after the rename.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import torch
import torch.nn as nn

# Fault injection for the tests only: seconds to sleep between writing the temporary file and
# the rename, so a test can SIGKILL the writer in the middle of a checkpoint.
_FAULT_DELAY_ENV = "HPCSGD_FAULT_CHECKPOINT_DELAY"
_STEP_FILE = re.compile(r"step_(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _KeepsWriteError:
    """A file object that remembers the OSError its write raised: torch.save turns it into
    a RuntimeError that names neither the file nor the cause ("unexpected pos 768 vs 662")."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):
        return getattr(self.f, name)


def atomic_write_bytes(path: Path, write) -> None:
    """write(fileobj) into a temporary file, fsync, then rename over path. A failed write
    (ENOSPC, EIO, ...) removes the temporary file and raises CheckpointError naming path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as raw:
            f = _KeepsWriteError(raw)
            try:
                write(f)
                raw.flush()
                os.fsync(raw.fileno())
            except (OSError, RuntimeError) as e:
                cause = f.error or e
                raise CheckpointError(f"writing checkpoint {str(path)!r} failed: "
                                      f"{_describe(cause)}; the earlier checkpoints are "
                                      "untouched") from e
        if os.environ.get(_FAULT_DELAY_ENV):
            time.sleep(float(os.environ[_FAULT_DELAY_ENV]))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return f"{error.strerror} (errno {error.errno})"
    return f"{type(error).__name__}: {error}"


def save_checkpoint(path: Path, state: dict, config_toml: str) -> None:
    """state holds tensors, numbers, strings, lists and dicts only (weights_only loadable)."""
    path, state = Path(path), {**state, "config": config_toml}
    toml = path.with_suffix(".toml")
    atomic_write_bytes(toml, lambda f: f.write(config_toml.encode()))
    try:
        atomic_write_bytes(path, lambda f: torch.save(state, f))
    except CheckpointError:
        if not path.exists():  # a .toml beside no checkpoint would only mislead a reader
            toml.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not an hpcsgd "
                              f"checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} holds no model state")
    return state


# ---------------------------------------------------------------------------- run state

def _rank_state(model: nn.Module, task: dict) -> dict:
    state = {"rng": torch.get_rng_state(),
             "buffers": {name: b.clone() for name, b in model.named_buffers()
                         if b.is_floating_point()}}
    if task:
        state["task"] = task
    return state


def capture_state(model, optimizer, progress: dict, world, task: dict | None = None) -> dict | None:
    """Collective: every rank contributes its RNG state, buffers and what its task carries
    between steps (`task`: the LSTM's hidden state); rank 0 gets the whole checkpoint state,
    the other ranks None."""
    per_rank = world.comm.gather(_rank_state(model, task or {}), root=0)
    if not world.is_root:
        return None
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "progress": dict(progress), "ranks": per_rank, "world_size": world.size}


@torch.no_grad()
def restore_state_(state: dict, model, optimizer, world) -> dict:
    """Load a captured state on every rank; returns the progress. With the world size of the
    checkpoint, each rank gets back its own RNG state and buffers (an exact continuation);
    with another size, every rank takes rank 0's."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    ranks = state["ranks"]
    mine = ranks[world.rank] if len(ranks) == world.size else ranks[0]
    torch.set_rng_state(mine["rng"])
    buffers = dict(model.named_buffers())
    for name, value in mine["buffers"].items():
        buffers[name].copy_(value)
    return state["progress"]


def rank_entry(state: dict, world) -> dict:
    """This rank's own entry of a checkpoint written by a world of the same size; {} for
    another size (the per-rank state belongs to another split of the data)."""
    ranks = state["ranks"]
    return ranks[world.rank] if len(ranks) == world.size else {}


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"step_{step:08d}.pt"


def snapshot_path(run_dir: Path, step: int) -> Path:
    """A cycle-end snapshot: a whole checkpoint a collapse branch continues from (Codreanu VI)."""
    return Path(run_dir) / "snapshots" / f"snapshot_{step:08d}.pt"


def snapshot_paths(run_dir: Path) -> list[Path]:
    """The run's snapshots, oldest first."""
    return sorted((Path(run_dir) / "snapshots").glob("snapshot_*.pt"))


def step_checkpoints(folder: Path) -> list[Path]:
    """The step checkpoints in folder, newest first (temporary files never match)."""
    if not Path(folder).is_dir():
        return []
    steps = [(int(m.group(1)), p) for p in Path(folder).iterdir()
             if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(steps, reverse=True)]


def newest_loadable_checkpoint(folder: Path, warn) -> tuple[Path, dict] | None:
    """(path, state) of the newest step checkpoint in folder that loads; None if there is
    none. Complete by construction (atomic rename), a file can still be damaged afterwards
    (a failing disk, a file system that loses the tail): each newer one that does not load is
    reported through warn(path, reason) and left in place (the caller sets it aside with
    set_aside_damaged once a checkpoint loads: the user's evidence and perhaps repairable;
    deleting it is their call). CheckpointError naming every file when none loads.
    Cost: every damaged file is read once more than usual (torch.load fails at its end)."""
    damaged = []
    for path in step_checkpoints(folder):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            warn(path, str(e))
            damaged.append(path.name)
    if damaged:
        raise CheckpointError(f"checkpoint.resume = 'auto': no checkpoint in {str(folder)!r} "
                              f"loads ({', '.join(damaged)}): move them away to start "
                              "afresh, or resume from another file with "
                              "--checkpoint.resume=PATH")
    return None


def set_aside_damaged(path: Path) -> Path:
    """Move a damaged step checkpoint (and its .toml) into damaged/ beside it, under a name no
    earlier one there has; return where it went. Out of the run's checkpoints it is kept as it
    is (the resumed run saves that step again), and neither pruning nor a later resume counts
    it. OSError when the file system refuses (the caller warns and leaves it in place): the
    pair moves together or not at all, so a .pt whose .toml is refused comes back."""
    path = Path(path)
    aside = path.parent / "damaged"
    aside.mkdir(exist_ok=True)
    target, n = aside / path.name, 1
    while target.exists() or target.with_suffix(".toml").exists():  # an orphan .toml too
        n += 1
        target = aside / f"{path.stem}.{n}{path.suffix}"
    path.replace(target)
    toml = path.with_suffix(".toml")
    if toml.exists():
        try:
            toml.replace(target.with_suffix(".toml"))
        except OSError as e:
            try:
                target.replace(path)
            except OSError as back:
                raise OSError(f"{path.name} moved to {target}, but {toml.name} was refused "
                              f"({e}) and the move back too ({back})") from e
            raise
    return target


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the `keep` newest step checkpoints (and their .toml), and remove the temporary
    files of writers killed before their rename (a whole checkpoint's size each, never read):
    called by the run's only writer after its own write, so none of them is in progress."""
    for path in step_checkpoints(folder)[keep:] if keep > 0 else []:
        path.unlink()
        path.with_suffix(".toml").unlink(missing_ok=True)
    for tmp in Path(folder).glob(".step_*.tmp*"):
        tmp.unlink(missing_ok=True)
