"""The LSTM language-model trainer under any world size: exact perplexity over the split,
identical replicas, and the same weights as one rank with the whole batch."""
import json
import math

import numpy as np
import torch
from mpi4py import MPI

from hpcsgd.run.checkpoint import load_checkpoint
from hpcsgd.config import Config
from hpcsgd.lm.evaluate import evaluate_perplexity
from hpcsgd.lm.train import train_lm
from hpcsgd.run.metrics import read_metrics
from hpcsgd.models.lstm import LSTMLanguageModel
from hpcsgd.run.world import init_world

VOCAB = 50


def _data():
    rng = np.random.default_rng(7)
    # a learnable stream: mostly "next id = previous + 1", some noise
    train = np.cumsum(rng.integers(1, 3, 2003)) % VOCAB
    return VOCAB, train.astype(np.int64), (np.arange(301) % VOCAB).astype(np.int64)


def _config(out_dir, name) -> Config:
    cfg = Config()
    cfg.model.name = "lstm_lm"
    cfg.lm.hidden, cfg.lm.layers, cfg.lm.seq_len, cfg.lm.eval_streams = 16, 1, 5, 3
    cfg.optim.base_lr, cfg.optim.momentum, cfg.optim.weight_decay = 0.5, 0.0, 0.0
    cfg.train.epochs, cfg.train.global_batch, cfg.train.log_every_steps = 2.0, 8, 10
    cfg.compute.threads = 1
    cfg.run.out_dir, cfg.run.name = str(out_dir), name
    return cfg


def _model(path):
    model = LSTMLanguageModel(VOCAB, 16, 1)
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def test_lm_run_exact_perplexity_and_same_weights_as_one_rank(world, shared_tmp):
    data = _data()
    cfg = _config(shared_tmp, "dist")
    summary = train_lm(cfg, world, data)

    assert summary["eval_targets"] == 300  # every target of the split once, any world size
    assert summary["steps"] == 2 * math.ceil((2003 // 8 - 1) / 5)
    assert math.isfinite(summary["perplexity"]) and summary["perplexity"] > 1.0

    # one rank alone with the whole batch of 8 streams reaches the same weights
    ref = _config(shared_tmp, f"single{world.rank}")
    alone = init_world(MPI.COMM_SELF)
    ref_summary = train_lm(ref, alone, data)
    world.comm.Barrier()
    dist_model, single_model = _model(cfg.run_dir / "final.pt"), _model(ref.run_dir / "final.pt")
    for a, b in zip(dist_model.parameters(), single_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert math.isclose(ref_summary["perplexity"], summary["perplexity"], rel_tol=1e-4)

    # the shared evaluation equals one rank evaluating the whole split
    # (and every target's own NLL lands at its place in the text, whichever rank ran it)
    shared, whole = (evaluate_perplexity(dist_model, data[2], w, num_streams=3, seq_len=5,
                                         per_target=True) for w in (world, alone))
    assert shared["count"] == whole["count"] == 300
    assert math.isclose(shared["nll"], whole["nll"], rel_tol=1e-6)
    np.testing.assert_allclose(shared["target_nll"], whole["target_nll"], rtol=1e-6)
    assert (shared["target_nll"] > 0).all()

    if world.rank == 0:
        records = read_metrics(cfg.run_dir / "metrics.jsonl")
        assert {"start", "train", "eval", "summary"} <= {r["tag"] for r in records}
        assert [r["epoch"] for r in records if r["tag"] == "eval"] == [1.0, 2.0]
        assert json.loads((cfg.run_dir / "summary.json").read_text())["ranks"] == world.size


def test_lm_date_ratio_is_logged_and_taken_before_clipping(world, shared_tmp):
    # DATE's ratio from the unclipped gradient: with the gradient clipped to 1e-4 first, every
    # ratio would be >= ||w|| / 1e-4 (> 1e3 for every tensor here); from the raw gradient
    # it is ||w|| / ||g||
    cfg = _config(shared_tmp, "date")
    cfg.optim.date, cfg.optim.date_lower, cfg.optim.date_upper = True, 0.0, 1e9
    cfg.lm.clip_norm, cfg.train.epochs = 1e-4, 1.0
    train_lm(cfg, world, _data())
    if world.rank == 0:
        ratios = [r["date_ratio"] for r in read_metrics(cfg.run_dir / "metrics.jsonl")
                  if r["tag"] == "train"]
        assert ratios and all(set(r) >= {"min", "p50", "max", "at_upper"} for r in ratios)
        assert all(0.0 < r["min"] <= r["p50"] <= r["max"] for r in ratios), ratios
        assert all(r["min"] < 1e2 for r in ratios), ratios


def test_lm_refuses_a_nan_loss_on_one_rank_like_the_image_trainer(world, shared_tmp,
                                                                  monkeypatch):
    # the shared loop's non-finite guard: every rank stops at the step, exit code 5, the
    # step and the rank named (a test-only patch: a NaN loss on the last rank at step 3)
    from hpcsgd.lm.train import LMTask
    from hpcsgd.exits import EXIT_NONFINITE
    real, calls = LMTask.loss, {"n": 0}

    def loss(self, forward, inputs, targets):
        calls["n"] += 1
        out = real(self, forward, inputs, targets)
        return out * float("nan") if calls["n"] == 3 else out

    if world.rank == world.size - 1:
        monkeypatch.setattr(LMTask, "loss", loss)
    cfg = _config(shared_tmp, "nan")
    summary = train_lm(cfg, world, _data())
    assert summary["exit_code"] == EXIT_NONFINITE and summary["step"] == 2
    if world.rank == 0:
        (bad,) = read_metrics(cfg.run_dir / "metrics.jsonl", "nonfinite")
        assert bad["step"] == 3 and bad["loss_ranks"] == [world.size - 1]
        assert bad["action"] == "stop"
