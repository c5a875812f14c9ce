"""Resuming with checkpoint.resume = "auto" when the ranks see different files (a lagging
shared file system, simulated by patching one rank's view): rank 0 chooses, every rank loads
that checkpoint, and a rank that loads another state is refused, named."""
import pytest

import hpcsgd.run.trainer as trainer_mod
from hpcsgd.run.checkpoint import load_checkpoint
from hpcsgd.run.metrics import read_metrics
from hpcsgd.train import train
from hpcsgd.run.world import Refused
from helpers import tiny_config, tiny_dataset


def _cfg(shared_tmp, **train_opts):
    if not (shared_tmp / "data").exists():
        tiny_dataset(shared_tmp / "data")
    return tiny_config(shared_tmp / "data", shared_tmp / "runs", run={"name": "r"},
                       compute={"threads": 1}, checkpoint={"every_epochs": 1.0, "keep": 5},
                       train={"global_batch": 64, **train_opts})


def _first_run(world, shared_tmp):
    if world.rank == 0:
        _cfg(shared_tmp)  # writes the data set once
    world.comm.Barrier()
    cfg = _cfg(shared_tmp, epochs=3.0)
    train(cfg, world)
    ckpts = sorted((cfg.run_dir / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in ckpts] == ["step_00000008.pt", "step_00000016.pt"]
    return ckpts


def test_every_rank_resumes_from_rank_0s_choice(world, shared_tmp, monkeypatch):
    older, newest = _first_run(world, shared_tmp)
    if world.rank == world.size - 1 and world.size > 1:  # its listing lags: only the older
        monkeypatch.setattr(trainer_mod, "latest_checkpoint", lambda folder: older)
    cfg = _cfg(shared_tmp, epochs=4.0)
    cfg.checkpoint.resume = "auto"
    summary = train(cfg, world)  # check_replicas at the end: every rank holds the same model
    assert summary["steps"] == 32
    if world.rank == 0:
        starts = read_metrics(cfg.run_dir / "metrics.jsonl", "start")
        assert starts[-1]["step"] == 16 and starts[-1]["resumed_from"] == str(newest)


def test_a_rank_that_loads_another_state_is_refused_by_name(world, shared_tmp, monkeypatch):
    older, newest = _first_run(world, shared_tmp)
    if world.rank == world.size - 1 and world.size > 1:  # its file system serves stale bytes
        monkeypatch.setattr(trainer_mod, "load_checkpoint", lambda path: load_checkpoint(older))
    cfg = _cfg(shared_tmp, epochs=4.0)
    cfg.checkpoint.resume = "auto"
    if world.size == 1:
        train(cfg, world)  # one rank cannot disagree with itself
        return
    with pytest.raises(Refused, match=rf"ranks \[{world.size - 1}\] loaded another state"):
        train(cfg, world)
