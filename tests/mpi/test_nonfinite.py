"""NaN in one rank's loss, at any world size: every rank agrees, the step's update is refused,
and the run skips the step or stops (exit code 5), naming the step and the rank.

The NaN is injected by wrapping hpcsgd.train's cross_entropy on the last rank (a test-only
patch: a real divergence cannot be confined to one rank on purpose)."""
import torch
import torch.nn.functional as F

import hpcsgd.train as train_mod
from hpcsgd.metrics import read_metrics
from hpcsgd.nonfinite import EXIT_NONFINITE
from helpers import tiny_config, tiny_dataset

BAD_STEP = 3  # 1-based optimizer step whose loss is NaN on the last rank


def _nan_at(step: int, monkeypatch, world):
    calls = {"n": 0}
    real = F.cross_entropy

    def loss(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] == step else out

    if world.rank == world.size - 1:
        monkeypatch.setattr(train_mod.F, "cross_entropy", loss)


def _run(world, shared_tmp, name, **train):
    if world.rank == 0 and not (shared_tmp / "data").exists():
        tiny_dataset(shared_tmp / "data")
    world.comm.Barrier()
    cfg = tiny_config(shared_tmp / "data", shared_tmp / "runs", run={"name": name},
                      compute={"threads": 1},
                      train={"epochs": 1.0, "global_batch": 64, "log_every_steps": 1, **train})
    return cfg, train_mod.train(cfg, world)


def test_a_nan_loss_on_one_rank_stops_every_rank_naming_step_and_rank(world, shared_tmp,
                                                                      monkeypatch):
    _nan_at(BAD_STEP, monkeypatch, world)
    cfg, summary = _run(world, shared_tmp, "nan-stop")
    assert summary["exit_code"] == EXIT_NONFINITE  # on every rank
    assert summary["step"] == BAD_STEP - 1  # the bad step's update was not applied
    if world.rank == 0:
        [event] = read_metrics(cfg.run_dir / "metrics.jsonl", "nonfinite")
        assert event["step"] == BAD_STEP and event["loss_ranks"] == [world.size - 1]
        assert event["gradients"] is True  # the NaN loss reached every rank's averaged gradients
        assert event["action"] == "stop"
        [stopped] = read_metrics(cfg.run_dir / "metrics.jsonl", "stopped")
        assert stopped["reason"] == "nonfinite"


def test_skip_drops_only_the_bad_update_and_the_weights_stay_finite(world, shared_tmp,
                                                                    monkeypatch):
    _nan_at(BAD_STEP, monkeypatch, world)
    cfg, summary = _run(world, shared_tmp, "nan-skip", nonfinite="skip")
    assert summary.get("exit_code", 0) == 0
    assert summary["steps"] == 512 // 64  # the run went on to its end
    final = torch.load(cfg.run_dir / "final.pt", weights_only=True)["model"]
    assert all(torch.isfinite(t).all() for t in final.values() if t.is_floating_point())
    if world.rank == 0:
        [event] = read_metrics(cfg.run_dir / "metrics.jsonl", "nonfinite")
        assert (event["step"], event["action"]) == (BAD_STEP, "skip")
        losses = [r["loss"] for r in read_metrics(cfg.run_dir / "metrics.jsonl", "train")]
        assert len(losses) == 512 // 64
        assert losses[BAD_STEP - 1] is None  # no finite loss in that log interval
        assert all(l is not None and l == l for i, l in enumerate(losses) if i != BAD_STEP - 1)
        [epoch] = read_metrics(cfg.run_dir / "metrics.jsonl", "epoch")
        assert epoch["epoch"] == 1 and epoch["loss"] == epoch["loss"] and epoch["img_per_s"] > 0


def test_skip_stops_after_max_nonfinite_skips(world, shared_tmp, monkeypatch):
    _nan_at(BAD_STEP, monkeypatch, world)
    _, summary = _run(world, shared_tmp, "nan-limit", nonfinite="skip", max_nonfinite_skips=0)
    assert summary["exit_code"] == EXIT_NONFINITE
