"""End-to-end training runs on a real (tiny) LMDB, under any world size."""
import json

import torch
from mpi4py import MPI

from hpcsgd.run.checkpoint import load_checkpoint
from hpcsgd.comm.reducer import parameter_digest
from hpcsgd.run.metrics import read_metrics
from hpcsgd.models import build_model
from hpcsgd.train import train
from hpcsgd.run.world import init_world
from helpers import tiny_config, tiny_dataset


def _load_model(path):
    model = build_model("lenet", num_classes=10, in_channels=1)
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def test_training_run_is_consistent_exact_and_logged(world, shared_tmp):
    if world.rank == 0:
        tiny_dataset(shared_tmp / "data")
    world.comm.Barrier()
    common = dict(compute={"threads": 1}, train={"epochs": 2.0, "global_batch": 64,
                                                  "eval_every_epochs": 1.0, "log_every_steps": 4})
    cfg = tiny_config(shared_tmp / "data", shared_tmp / "runs", run={"name": "dist"}, **common)
    summary = train(cfg, world)

    # exact evaluation: every test record counted once, whatever the world size
    assert summary["eval_images"] == 200
    assert summary["steps"] == 2 * (512 // 64)
    assert 0.0 <= summary["top1"] <= 1.0

    # every rank holds the same parameters after training
    digests = world.comm.allgather(parameter_digest(_load_model(cfg.run_dir / "final.pt")))
    assert len(set(digests)) == 1

    # the same run on a 1-rank world (each rank alone) reaches the same weights
    ref_cfg = tiny_config(shared_tmp / "data", shared_tmp / "runs",
                          run={"name": f"single{world.rank}"}, **common)
    train(ref_cfg, init_world(MPI.COMM_SELF))
    world.comm.Barrier()
    dist_model, single_model = _load_model(cfg.run_dir / "final.pt"), \
        _load_model(ref_cfg.run_dir / "final.pt")
    for a, b in zip(dist_model.parameters(), single_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    if world.rank == 0:
        tags = {r["tag"] for r in read_metrics(cfg.run_dir / "metrics.jsonl")}
        assert {"start", "train", "eval", "summary"} <= tags
        evals = read_metrics(cfg.run_dir / "metrics.jsonl", "eval")
        assert [e["epoch"] for e in evals] == [1.0, 2.0]
        assert json.loads((cfg.run_dir / "summary.json").read_text())["ranks"] == world.size
        assert (cfg.run_dir / "config.toml").is_file() and (cfg.run_dir / "final.toml").is_file()
        assert any((cfg.run_dir / "tensorboard").glob("events.out.tfevents.*"))
