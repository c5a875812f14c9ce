"""NaN in one rank's loss, at any world size: every rank agrees, the step's update is refused,
and the run skips the step or stops (exit code 5), naming the step and the rank.

The NaN is injected on the last rank by wrapping the image task's cross_entropy (a NaN loss) or
the model's input (a NaN forward pass, which also poisons BatchNorm's running statistics):
test-only patches, since a real divergence cannot be confined to one rank on purpose."""
import pytest
import torch
import torch.nn.functional as F

import hpcsgd.train as train_mod
from hpcsgd.run.metrics import read_metrics
from hpcsgd.exits import EXIT_NONFINITE
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


def _nan_input_at(step: int, monkeypatch, world):
    real = train_mod.build_from_config

    def build(cfg):
        model = real(cfg)
        if world.rank == world.size - 1:
            calls = {"n": 0}

            def poison(module, args):
                if module.training:
                    calls["n"] += 1
                    if calls["n"] == step:
                        return (args[0] * float("nan"),)
            model.register_forward_pre_hook(poison)
        return model
    monkeypatch.setattr(train_mod, "build_from_config", build)


def _run(world, shared_tmp, name, model="lenet", **train):
    if world.rank == 0 and not (shared_tmp / "data").exists():
        tiny_dataset(shared_tmp / "data")
    world.comm.Barrier()
    cfg = tiny_config(shared_tmp / "data", shared_tmp / "runs", run={"name": name},
                      compute={"threads": 1}, model={"name": model},
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


@pytest.mark.parametrize("where,model", [("loss", "lenet"), ("input", "cifar_resnet20")])
def test_skip_drops_only_the_bad_update_and_the_weights_stay_finite(world, shared_tmp,
                                                                    monkeypatch, where, model):
    # "input": the NaN forward pass updates BatchNorm's running statistics on one rank; skip
    # restores them, else evaluation averages the NaN into every rank's final model
    (_nan_at if where == "loss" else _nan_input_at)(BAD_STEP, monkeypatch, world)
    cfg, summary = _run(world, shared_tmp, f"nan-skip-{where}", model=model, nonfinite="skip")
    assert summary.get("exit_code", 0) == 0
    assert summary["steps"] == 512 // 64  # the run went on to its end
    final = torch.load(cfg.run_dir / "final.pt", weights_only=True)["model"]
    assert all(torch.isfinite(t).all() for t in final.values() if t.is_floating_point())
    assert summary["top1"] > 0.0  # evaluation ran on finite weights and statistics
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
