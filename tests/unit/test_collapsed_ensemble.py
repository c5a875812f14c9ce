"""Codreanu et al. VI's collapsed ensemble as one command, under a real mpiexec: the cyclic
main run, a collapse branch from each cycle-end snapshot, the ensemble of the branches."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from hpcsgd.collapsed_ensemble import main as procedure_main
from hpcsgd.config import load_config, to_toml
from hpcsgd.run.metrics import read_metrics
from hpcsgd.schedule.plan import build_schedule
from helpers import tiny_config, tiny_dataset

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")

# 9 epochs of 4 steps: linear decay to 2, power-2 decay to 3, cycles ending at 6 and 9;
# snapshots at 3 (cyclic_snapshot_start), 6 and 9
CYCLIC = dict(decay="cyclic", warmup_epochs=0.5, cyclic_linear_until=2.0, cyclic_start=3.0,
              cyclic_rewarm_epochs=1.0, cyclic_decay_epochs=2.0, cyclic_snapshot_start=True)


def _procedure(tmp_path, *args):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_EXPECT"))}
    cmd = [sys.executable, "-m", "hpcsgd.collapsed_ensemble", "job.toml",
           "--launcher", f"{MPIEXEC} -n 2", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_one_command_runs_main_run_branches_and_ensemble(tmp_path):
    tiny_dataset(tmp_path / "data", n_train=256)
    cfg = tiny_config("data", "runs", schedule=CYCLIC,
                      optim={"weight_decay": 5e-5},
                      train={"epochs": 9.0, "global_batch": 64, "eval_every_epochs": 9.0,
                             "log_every_steps": 1},
                      compute={"threads": 1}, run={"name": "cyc"})
    (tmp_path / "job.toml").write_text(to_toml(cfg))
    res = _procedure(tmp_path, "--collapse-epochs", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    runs = tmp_path / "runs"
    report = json.loads((runs / "cyc" / "collapsed_ensemble.json").read_text())
    assert [b["name"] for b in report["branches"]] == ["cyc-c1", "cyc-c2", "cyc-c3"]
    assert [b["from_epoch"] for b in report["branches"]] == [3.0, 6.0, 9.0]
    assert report["extra_epochs"] == 3.0 and report["main"]["epochs"] == 9.0
    assert report["ensemble"]["members"] == ["cyc-c1", "cyc-c2", "cyc-c3"]
    for entry in report["branches"] + report["snapshots"] + [report["ensemble"]]:
        assert entry["count"] == 200 and 0.0 <= entry["top1"] <= entry["top5"] <= 1.0
    assert "ensemble of the 3 collapse branches" in res.stdout

    # the main trajectory never collapses: its weight decay is the half value throughout
    main_train = read_metrics(runs / "cyc" / "metrics.jsonl", "train")
    assert {r["weight_decay"] for r in main_train} == {5e-5}
    # each branch continues its snapshot: power-2 decay to 0 from the snapshot's LR,
    # weight decay x2, over 1 epoch = 4 steps
    main_schedule = build_schedule(load_config(tmp_path / "job.toml"))
    for branch in report["branches"]:
        start = branch["from_epoch"]
        records = read_metrics(runs / branch["name"] / "metrics.jsonl", "train")
        assert [r["step"] for r in records] == [int(start * 4) + k for k in (1, 2, 3, 4)]
        lr0 = main_schedule.at(start).lr
        assert [r["lr"] for r in records] == pytest.approx(
            [lr0 * (1 - k / 4) ** 2 for k in range(4)])
        assert [r["weight_decay"] for r in records] == pytest.approx([1e-4] * 4)
        summary = json.loads((runs / branch["name"] / "summary.json").read_text())
        assert summary["steps"] == int(start * 4) + 4

    # run again: every step is done, nothing is launched
    again = _procedure(tmp_path, "--collapse-epochs", "1")
    assert again.returncode == 0 and "+ " not in again.stdout, again.stdout


def test_a_non_cyclic_config_is_refused_before_anything_runs(tmp_path, capsys):
    (tmp_path / "job.toml").write_text('[train]\nepochs = 2.0\n')
    assert procedure_main([str(tmp_path / "job.toml")]) == 2
    assert "schedule.decay = 'poly'" in capsys.readouterr().err
