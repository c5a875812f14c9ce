"""tools/experiments*.py: the plan is complete and every run is
a configuration the trainers accept; verdict rules; the report from run folders; one real
`mpiexec -n 4` run (+ ensemble evaluation) through the runner. No accuracy thresholds."""
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from hpcsgd.config import load_config, to_toml, validate
from hpcsgd.lm.train import check_lm_config
from hpcsgd.schedules import build_schedule
from helpers import tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import experiments as ex  # noqa: E402
import experiments_report as rep  # noqa: E402
import experiments_sweep as sw  # noqa: E402
import experiments_verdicts as vd  # noqa: E402


def test_quick_plan_covers_every_claim_within_about_15_minutes():
    runs = ex.plan(ex.QUICK, {})
    assert {r.experiment for r in runs} == {"scaling", "collapse", "cyclic", "lstm"}
    scaling = {(r.method, r.batch) for r in runs if r.experiment == "scaling"}
    assert ("baseline", 128) in scaling
    assert {("goyal", 4096), ("lars", 4096), ("date", 4096)} <= scaling
    assert {r.method for r in runs if r.experiment == "collapse"} == {
        "wd_full", "wd_half", "wd_half_collapse"}
    assert len({r.name for r in runs}) == len(runs)
    assert sum(r.estimate_s for r in runs) <= 16 * 60


@pytest.mark.parametrize("mode", [ex.QUICK, ex.FULL], ids=["quick", "full"])
def test_every_planned_run_is_a_config_the_trainer_accepts(mode):
    for run in ex.plan(mode, {}):
        cfg = load_config(ROOT / run.config, list(run.overrides))
        if run.entry == "hpcsgd.lm.train":
            check_lm_config(cfg, 4)
            continue
        validate(cfg, world_size=4)
        build_schedule(cfg, steps_per_epoch=60000 / cfg.train.global_batch)  # LEGW, cycles


def test_same_epochs_at_every_batch_and_date_never_retuned():
    for mode in (ex.QUICK, ex.FULL):
        runs = [r for r in ex.plan(mode, {}) if r.experiment == "scaling"]
        assert {o for r in runs for o in r.overrides if o.startswith("--train.epochs=")} == \
            {f"--train.epochs={mode.epochs}"}
        assert {r.batch for r in runs} == set(mode.batches)
        date = [set(o for o in r.overrides if "global_batch" not in o and "seed" not in o)
                for r in runs if r.method == "date"]
        assert all(d == date[0] for d in date)


def test_full_lars_seeds_follow_the_best_of_the_sweep():
    first = ex.plan(ex.FULL, {})
    assert not [r for r in first if r.method == "lars" and r.seed > 0]
    sweep = [r for r in first if r.tune == "lars-b512"]
    assert len(sweep) == 3
    results = {r.name: {"top1": [0.5, 0.7, 0.6][i]} for i, r in enumerate(sweep)}  # the middle
    seeds = [r for r in ex.plan(ex.FULL, results) if r.method == "lars" and r.seed > 0]
    assert {r.batch for r in seeds} == {512} and len(seeds) == 2
    gamma = f"--optim.base_lr={ex.lars_gamma(512) * 1.0}"
    assert all(gamma in r.overrides for r in seeds)


def test_a_sweep_whose_best_is_at_an_edge_is_extended_then_settles(tmp_path):
    lars = lambda runs: [r for r in runs if r.tune == "lars-b2048"]  # noqa: E731
    gamma = lambda r: float(r.overrides[r.overrides.index("--optim.name=lars") + 1]  # noqa: E731
                            .split("=")[1])
    sweep = lars(ex.plan(ex.FULL, {}))
    assert sorted(gamma(r) for r in sweep) == [8.0, 16.0, 32.0]
    # the lowest gamma wins: gamma / 2 is tried next, and no seed runs until it has finished
    results = {r.name: {"top1": 0.9 - gamma(r) / 100} for r in sweep}
    runs = ex.plan(ex.FULL, results)
    assert sorted(gamma(r) for r in lars(runs)) == [4.0, 8.0, 16.0, 32.0]
    assert not [r for r in runs if r.method == "lars" and r.batch == 2048 and r.seed > 0]
    # 4 wins too: one more extension (2), then, at the limit, the seeds take the best
    results.update({r.name: {"top1": 0.9 - gamma(r) / 100} for r in lars(runs)})
    runs = ex.plan(ex.FULL, results)
    assert sorted(gamma(r) for r in lars(runs)) == [2.0, 4.0, 8.0, 16.0, 32.0]
    results.update({r.name: {"top1": 0.9 - gamma(r) / 100} for r in lars(runs)})
    runs = ex.plan(ex.FULL, results)
    assert len(lars(runs)) == 5  # SWEEP_EXTENSIONS = 2
    seeds = [r for r in runs if r.method == "lars" and r.batch == 2048 and r.seed > 0]
    assert len(seeds) == 2 and all("--optim.base_lr=2.0" in r.overrides for r in seeds)
    assert rep.sweep_edges(lars(runs), results) == [(2048, 2.0)]  # the report says so
    # an interior best stops the extension at once
    interior = {r.name: {"top1": 0.9 - abs(gamma(r) - 16.0) / 100} for r in sweep}
    assert len(lars(ex.plan(ex.FULL, interior))) == 3
    assert rep.sweep_edges(sweep, interior) == []
    # a tie goes to the earlier run (as the plan decides), and a sweep with an extension
    # still to run is not reported as ending at an edge
    tie = {r.name: {"top1": 0.9 if gamma(r) in (16.0, 32.0) else 0.5} for r in sweep}
    assert rep.sweep_edges(sweep, tie) == [] and len(lars(ex.plan(ex.FULL, tie))) == 3
    low = {r.name: {"top1": 0.9 - gamma(r) / 100} for r in sweep}
    assert rep.sweep_edges(lars(ex.plan(ex.FULL, low)), low) == []


def test_settle_plans_chained_extensions_from_run_folders(tmp_path):
    """The runner and the report plan to a fixed point: an extension planned from results is
    read back, and may plan the next one."""
    def finish(run, top1):
        folder = tmp_path / run.name
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"top1": top1}))
        (folder / "experiment.json").write_text(json.dumps({"overrides": list(run.overrides)}))

    def lars_2048(runs):
        return sorted((r for r in runs if r.tune == "lars-b2048"), key=lambda r: r.name)

    for r in lars_2048(ex.plan(ex.FULL, {})):
        finish(r, 0.5 if "-g8-" in r.name else 0.4)  # the lowest (8) wins
    runs, results = ex.settle(ex.FULL, tmp_path)
    (ext,) = [r for r in lars_2048(runs) if r.name not in results]
    assert "-g4-" in ext.name
    finish(ext, 0.6)  # 4 wins: settle must now plan 2 without another call to the runner
    runs, results = ex.settle(ex.FULL, tmp_path)
    assert [r.name for r in lars_2048(runs) if r.name not in results] == \
        ["scaling-lars-b2048-g2-s0"]


def test_sweep_edge_rule():
    assert sw.edge_extension([4.0, 8.0, 16.0], [0.80, 0.85, 0.70]) is None    # interior best
    assert sw.edge_extension([4.0, 8.0, 16.0], [0.86, 0.85, 0.70]) == 2.0     # lowest: halve
    assert sw.edge_extension([4.0, 8.0, 16.0], [0.80, 0.85, 0.90]) == 32.0    # highest: double
    assert sw.edge_extension([8.0, 4.0, 16.0, 2.0], [0.8, 0.9, 0.7, 0.85]) is None  # by value
    assert sw.edge_extension([8.0], [0.9]) is None                               # no sweep
    assert sw.best_gamma([4.0, 8.0, 16.0], [0.85, 0.85, 0.7]) == 4.0            # tie: earlier


def test_verdict_rules():
    assert vd.verdict_goyal(0.90, {512: 0.899, 2048: 0.85})[0] == "reproduced"
    assert vd.verdict_goyal(0.90, {512: 0.90, 2048: 0.895})[0] == "not reproduced"
    assert vd.verdict_goyal(0.90, {512: 0.80})[0] == "partly reproduced"
    assert vd.verdict_goyal(0.90, {})[0] == "not measured"
    assert vd.verdict_goyal(float("nan"), {512: 0.80})[0] == "not measured"
    assert vd.verdict_keeps(float("nan"), {512: 0.9}, [512])[0] == "not measured"
    assert vd.verdict_keeps(0.90, {512: 0.895, 8192: 0.891}, [512, 8192])[0] == "reproduced"
    assert vd.verdict_keeps(0.90, {8192: 0.70}, [8192])[0] == "not reproduced"
    assert vd.verdict_keeps(0.90, {}, [8192])[0] == "not measured"
    assert vd.verdict_better([0.90, 0.901, 0.899], [0.91, 0.912, 0.909])[0] == "reproduced"
    assert vd.verdict_better([0.90, 0.92], [0.906, 0.918])[0] == "inconclusive"
    assert vd.verdict_better([0.90], [0.89])[0].startswith("not reproduced")
    assert vd.verdict_ensemble([0.90, 0.91], 0.915)[0] == "reproduced"
    assert vd.verdict_ensemble([0.90, 0.91], 0.905)[0] == "not reproduced"
    assert vd.verdict_lm(100.0, 104.0)[0] == "reproduced"
    assert vd.verdict_lm(100.0, 120.0)[0] == "not reproduced"


def _fake_run_folder(out_dir: Path, run, value: float) -> None:
    folder = out_dir / run.name
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({"overrides": list(run.overrides),
                                                        "provenance": "commit `abc`"}))
    lm = run.experiment == "lstm"
    summary = {"perplexity": 100 / value, "wall_time_s": 5.0} if lm else \
        {"top1": value, "wall_time_s": 5.0}
    (folder / "summary.json").write_text(json.dumps(summary))
    key = "perplexity" if lm else "top1"
    loss = float("nan") if run.method == "goyal" else 1.0  # the Goyal runs "diverged"
    lines = [{"tag": "train", "epoch": e / 2, "lr": 0.1 / (1 + e), "loss": loss}
             for e in range(1, 9)]
    lines += [{"tag": "eval", "epoch": e, key: summary[key]} for e in (1.0, 2.0)]
    if run.ensemble:  # the LR plot reads the schedule from the run's saved config
        cfg = load_config(ROOT / run.config, list(run.overrides))
        (folder / "config.toml").write_text(to_toml(cfg))
        snaps = [folder / "snapshots" / f"snapshot_{s:08d}.pt" for s in (10, 20)]
        lines += [{"tag": "snapshot", "epoch": i + 1.0, "path": str(p)} for i, p in enumerate(snaps)]
        (folder / "ensemble.json").write_text(json.dumps(
            {"snapshots": [{"path": str(p), "top1": value - 0.01 * i} for i, p in enumerate(snaps)],
             "ensemble": {"top1": value + 0.005}}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_report_from_run_folders_names_every_claim_and_missing_run(tmp_path):
    runs = ex.plan(ex.QUICK, {})
    missing = next(r for r in runs if r.method == "wd_half")
    for i, run in enumerate(runs):
        if run is not missing:
            _fake_run_folder(tmp_path / "runs", run, 0.80 + 0.001 * i)
    results = ex.read_results(tmp_path / "runs", runs)
    assert missing.name not in results and len(results) == len(runs) - 1
    path = rep.write_report(ex.QUICK, runs, results, tmp_path / "runs", tmp_path / "docs")
    text = path.read_text()
    assert "QUICK MODE" in text and "commit `abc`" in text
    for claim in ("Claim 2", "Claim 3", "Claim 4", "5a", "5b", "Claim 6", "Claim 7"):
        assert claim in text
    assert f"`{missing.name}`" in text.split("Failed or missing runs:")[1].splitlines()[0]
    assert "diverged (loss NaN)" in text and "`scaling-goyal-b4096-s0`" in text
    for png in ("scaling", "curves", "collapse", "cyclic", "lstm"):
        assert (tmp_path / "docs" / f"results_{png}.png").stat().st_size > 1000


def test_a_missing_lstm_run_is_named_not_printed_as_nan(tmp_path):
    runs = ex.plan(ex.QUICK, {})
    missing = next(r for r in runs if r.experiment == "lstm" and r.method == "date")
    for i, run in enumerate(runs):
        if run is not missing:
            _fake_run_folder(tmp_path / "runs", run, 0.80 + 0.001 * i)
    results = ex.read_results(tmp_path / "runs", runs)
    text = rep.write_report(ex.QUICK, runs, results, tmp_path / "runs", tmp_path / "docs").read_text()
    claim7 = text.split("## Claim 7")[1].split("## ")[0]
    assert f"| date | {missing.batch} | — (no finished run) |" in claim7
    assert "| nan |" not in claim7 and "**Claim 7:** not measured" in claim7


def test_a_changed_command_is_run_again(tmp_path):
    run = ex.plan(ex.QUICK, {})[0]
    _fake_run_folder(tmp_path, run, 0.9)
    assert run.name in ex.read_results(tmp_path, [run])
    changed = replace(run, overrides=run.overrides + ("--train.seed=5",))
    assert ex.read_results(tmp_path, [changed]) == {}


def test_runner_runs_a_real_cyclic_job_and_its_ensemble(tmp_path):
    """Two real `mpiexec -n 4` jobs (training with snapshots, then hpcsgd.ensemble)."""
    tiny_dataset(tmp_path / "data", n_train=256)
    over = ("--data.path=" + str(tmp_path / "data"), "--data.augment=false",
            "--compute.threads=1", "--train.epochs=9.0", "--train.global_batch=64",
            "--train.eval_every_epochs=9.0", "--schedule.warmup_epochs=0.5",
            "--schedule.decay=cyclic", "--schedule.cyclic_linear_until=2.0",
            "--schedule.cyclic_start=3.0", "--schedule.cyclic_rewarm_epochs=1.0",
            "--schedule.cyclic_decay_epochs=2.0", "--schedule.cyclic_snapshot_start=true")
    run = ex.Run("tiny-cyclic", "cyclic", "cyclic", 64, 0, ex.LENET, over, ensemble=True)
    venv = ROOT / ".venv" / "bin"
    lines = []
    assert ex.execute(run, tmp_path / "runs", mpiexec=str(venv / "mpiexec"),
                      python=str(venv / "python"), log=lines.append), \
        (tmp_path / "runs" / run.name / "stdout.log").read_text()[-3000:]
    result = ex.read_results(tmp_path / "runs", [run])[run.name]
    assert result["ranks"] == 4 and result["eval_images"] == 200
    assert len(result["ensemble"]["snapshots"]) == 3
    assert result["ensemble"]["ensemble"]["count"] == 200


def test_provenance_names_the_commit_and_whole_paths():
    text = rep.provenance()
    assert text.startswith("commit `")
    for path in text.split("`")[3::2]:  # the paths after the commit hash
        assert path.split("/")[0] in ("hpcsgd", "tools", "jobs"), text
