"""A short cyclic-schedule run writes its snapshots; the ensemble mode reports each snapshot
and the average of their softmax outputs (Codreanu et al. VI, Table XI), with which test
images each got right, in split order whatever the number of ranks."""
import json

import numpy as np
import pytest
import torch

from hpcsgd import config as config_mod
from hpcsgd.data import build_loaders
from hpcsgd.ensemble import evaluate_ensemble
from hpcsgd.run.checkpoint import snapshot_paths
from hpcsgd.ensemble import run as run_ensemble
from hpcsgd.run.hits import decode_hits
from hpcsgd.run.metrics import read_metrics
from hpcsgd.train import train
from helpers import tiny_config, tiny_dataset, write_image_lmdb

# A cyclic schedule compressed to 9 epochs: linear decay to 2, power-2 decay to 3, then
# cycles of 1 re-warm epoch + 2 decay epochs ending at 6 and 9 (snapshots), plus epoch 3.
CYCLIC = dict(decay="cyclic", warmup_epochs=0.5, cyclic_linear_until=2.0, cyclic_start=3.0,
              cyclic_rewarm_epochs=1.0, cyclic_decay_epochs=2.0, cyclic_snapshot_start=True)


def test_cyclic_run_snapshots_and_their_ensemble(world, shared_tmp):
    if world.rank == 0:
        tiny_dataset(shared_tmp / "data", n_train=256)
    world.comm.Barrier()
    cfg = tiny_config(shared_tmp / "data", shared_tmp / "runs", schedule=CYCLIC,
                      train={"epochs": 9.0, "global_batch": 64, "eval_every_epochs": 9.0},
                      compute={"threads": 1}, run={"name": "cyclic"})
    train(cfg, world)

    paths = snapshot_paths(cfg.run_dir)
    assert [p.name for p in paths] == ["snapshot_00000012.pt", "snapshot_00000024.pt",
                                       "snapshot_00000036.pt"]  # epochs 3, 6, 9 x 4 steps
    if world.rank == 0:
        logged = [r["step"] for r in read_metrics(cfg.run_dir / "metrics.jsonl", "snapshot")]
        assert logged == [12, 24, 36]

    report = run_ensemble(cfg, world, paths)
    assert len(report["snapshots"]) == 3
    for entry in report["snapshots"] + [report["ensemble"]]:
        assert entry["count"] == 200            # every test image once, for each model
        assert 0.0 <= entry["top1"] <= entry["top5"] <= 1.0
    # the last snapshot is the final model: its accuracy is the run's final evaluation
    final = json.loads((cfg.run_dir / "summary.json").read_text())
    assert report["snapshots"][-1]["top1"] == pytest.approx(final["top1"])
    assert json.loads((cfg.run_dir / "ensemble.json").read_text())["ensemble"] == \
        report["ensemble"]
    if world.rank == 0:
        for entry in report["snapshots"] + [report["ensemble"]]:
            hits = decode_hits(entry["top1_hits"], entry["count"])
            assert hits.sum() == round(entry["top1"] * entry["count"])


class Constant(torch.nn.Module):
    """Answers `label` for every image: it gets right exactly the images of that label."""
    def __init__(self, label: int, classes: int = 10):
        super().__init__()
        self.logits = torch.zeros(classes)
        self.logits[label] = 1.0

    def forward(self, images):
        return self.logits.expand(len(images), -1)


def test_per_image_hits_are_in_split_order(world, shared_tmp):
    labels = None
    if world.rank == 0:
        write_image_lmdb(shared_tmp / "data" / "train", 64, seed=1)
        labels = write_image_lmdb(shared_tmp / "data" / "test", 203, seed=2)  # 203: uneven blocks
    labels = world.comm.bcast(labels, root=0)
    cfg = tiny_config(shared_tmp / "data", shared_tmp / "runs", compute={"threads": 1})
    _, source = build_loaders(cfg, world, config_mod.local_batch(cfg, world.size))
    results = evaluate_ensemble([Constant(3), Constant(7)], source, world, cfg.compute, batch=16)
    # on every rank
    assert np.array_equal(results[0]["top1_hits"], labels == 3)
    assert np.array_equal(results[1]["top1_hits"], labels == 7)
    assert results[0]["top1"] == pytest.approx(np.mean(labels == 3))
