"""Checkpoints: what a run needs to continue exactly, written atomically by rank 0.

Contents: model parameters, optimizer state (identical on every rank), the progress (global
step, from which the schedule position and the sampler position follow: both are pure
functions of it), each rank's own RNG state and floating buffers (BatchNorm running
statistics are per rank), and the config as TOML, also written beside the file.

Writing: temporary file, fsync, rename, fsync of the folder, so a reader (or a resumed run)
sees the previous checkpoint or the new one, never a torn file, even if the writer is killed.
Loading: ``torch.load(weights_only=True)``: tensors and plain containers only, no arbitrary
unpickling.
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


def atomic_write_bytes(path: Path, write) -> None:
    """write(fileobj) into a temporary file, fsync, then rename over path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if os.environ.get(_FAULT_DELAY_ENV):
            time.sleep(float(os.environ[_FAULT_DELAY_ENV]))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def save_checkpoint(path: Path, state: dict, config_toml: str) -> None:
    """state holds tensors, numbers, strings, lists and dicts only (weights_only loadable)."""
    state = {**state, "config": config_toml}
    atomic_write_bytes(Path(path).with_suffix(".toml"), lambda f: f.write(config_toml.encode()))
    atomic_write_bytes(Path(path), lambda f: torch.save(state, f))


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


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint of the highest step in folder (complete by construction: atomic)."""
    if not Path(folder).is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in Path(folder).iterdir()
             if (m := _STEP_FILE.match(p.name))]
    return max(steps)[1] if steps else None


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the `keep` newest step checkpoints (and their .toml)."""
    steps = sorted((int(m.group(1)), p) for p in Path(folder).iterdir()
                   if (m := _STEP_FILE.match(p.name)))
    for _, path in steps[:-keep] if keep > 0 else []:
        path.unlink()
        path.with_suffix(".toml").unlink(missing_ok=True)
