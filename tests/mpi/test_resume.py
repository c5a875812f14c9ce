"""Resuming with checkpoint.resume = "auto" when the ranks see different files (a lagging
shared file system, simulated by patching one rank's view): rank 0 chooses, every rank loads
that checkpoint, and a rank that loads another state is refused, named. A damaged newest
checkpoint (truncated, as a broken file system leaves it) is passed over with a warning
naming it and set aside, unchanged, into checkpoints/damaged/; when none loads the run is
refused naming them all."""
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
        monkeypatch.setattr(trainer_mod, "newest_loadable_checkpoint",
                            lambda folder, warn: (older, load_checkpoint(older)))
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


def test_a_damaged_newest_checkpoint_is_passed_over_by_name(world, shared_tmp, capsys):
    older, newest = _first_run(world, shared_tmp)
    if world.rank == 0:
        size = newest.stat().st_size
        with open(newest, "r+b") as f:  # cut part way, as a full or failing file system would
            f.truncate(size // 3)
        evidence = newest.read_bytes()
    world.comm.Barrier()
    cfg = _cfg(shared_tmp, epochs=4.0)
    cfg.checkpoint.resume = "auto"
    summary = train(cfg, world)
    assert summary["steps"] == 32
    if world.rank == 0:
        # kept as it was, set aside: the resumed run saves step 16 again, and its pruning and
        # a later resume must not count the damaged file among the run's checkpoints
        aside = newest.parent / "damaged" / newest.name
        assert aside.read_bytes() == evidence and aside.with_suffix(".toml").is_file()
        assert load_checkpoint(newest)["progress"]["step"] == 16  # the resumed run's own
        moved = read_metrics(cfg.run_dir / "metrics.jsonl", "checkpoint_set_aside")
        assert [(m["path"], m["to"]) for m in moved] == [(str(newest), str(aside))]
        starts = read_metrics(cfg.run_dir / "metrics.jsonl", "start")
        assert starts[-1]["step"] == 8 and starts[-1]["resumed_from"] == str(older)
        damaged = read_metrics(cfg.run_dir / "metrics.jsonl", "checkpoint_damaged")
        assert [d["path"] for d in damaged] == [str(newest)]
        assert "corrupt or not an hpcsgd checkpoint" in damaged[0]["reason"]
        err = capsys.readouterr().err
        assert f"checkpoint {str(newest)!r} is corrupt" in err and f"from {str(older)!r}" in err
        assert f"moved to {str(aside)!r}" in err


def test_resume_auto_is_refused_when_no_checkpoint_loads(world, shared_tmp):
    older, newest = _first_run(world, shared_tmp)
    if world.rank == 0:
        older.write_bytes(b"")
        newest.write_bytes(newest.read_bytes()[:1000])
    world.comm.Barrier()
    cfg = _cfg(shared_tmp, epochs=4.0)
    cfg.checkpoint.resume = "auto"
    with pytest.raises(Refused, match=r"'auto': no checkpoint in .* loads") as refusal:
        train(cfg, world)
    assert newest.name in str(refusal.value) and older.name in str(refusal.value)
