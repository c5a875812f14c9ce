"""tools/experiments/: the plan is complete, in the papers' regime and within the time
budget, and every run is a configuration the trainers accept; the report from run folders,
of a whole set and of a partial one. The sweep and verdict rules are tested in
test_experiment_verdicts.py, the runner in test_experiments_runner.py, the set's extensions
(--seeds, --bn-curve, --collapse-seeds) in test_experiment_extensions.py. No accuracy
thresholds."""
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hpcsgd.config import load_config, to_toml
from hpcsgd.run.hits import encode_hits
from hpcsgd.schedule.plan import build_schedule

from tools.experiments import budget
from tools.experiments import plan as pl
from tools.experiments import plots
from tools.experiments import report as rep
from tools.experiments import run as ex
from tools.experiments import sweep as sw
from tools.experiments import verdicts as vd
from helpers import hits_vector as _hits

ROOT = Path(__file__).resolve().parents[2]

CLAIMS = {"bn", "nobn", "date", "collapse", "cyclic", "lstm"}


def _full_set(mode=ex.FULL):
    return ex.simulated_plan(mode)[0]


def test_quick_plan_covers_every_claim_within_about_15_minutes():
    runs = _full_set(ex.QUICK)
    assert {r.experiment for r in runs} == CLAIMS
    assert len({r.name for r in runs}) == len(runs)
    assert sum(r.estimate_s for r in runs) <= 16 * 60


def test_full_plan_is_the_papers_regime_within_about_six_hours():
    runs = _full_set()
    assert {r.experiment for r in runs} == CLAIMS
    assert sum(r.estimate_s for r in runs) <= 6.3 * 3600
    images = [r for r in runs if r.kind == "image"]
    scaling = {r.batch for r in images if r.experiment in ("bn", "nobn", "date")}
    assert scaling <= {128, 256, 512, 1024, 2048}
    assert max(r.batch for r in images) / budget.FIT_IMAGES <= 0.05  # the papers' largest: 2.5-5%
    for group in ("bn", "nobn", "date"):
        big = max((r for r in images if r.experiment == group), key=lambda r: r.batch)
        assert big.batch == 2048 and budget.steps_of(big) >= vd.MIN_STEPS
    date = sorted({r.batch for r in runs if r.experiment == "date"})
    assert date[-1] == 8 * date[0]  # DATE's LeNet claim: 8x
    # the seed-0 run of every claim comes before any other seed; BN and DATE lead
    order = [r.experiment for r in runs]
    assert order[0] == "bn" and order.index("date") < order.index("nobn") < order.index("lstm")
    first_seed1 = next((i for i, r in enumerate(runs) if r.seed > 0), len(runs))
    assert all(r.seed == 0 for r in runs[:first_seed1]) and "lstm" in order[:first_seed1]


def test_claim5_lets_weight_decay_act_with_32_images_per_rank_and_paired_seeds():
    runs = [r for r in _full_set() if r.experiment == "collapse"]
    sums = {r.method: budget.lr_wd_sum(r) for r in runs if r.seed == 0}
    assert 1.0 <= sums["wd_full"] <= 2.5  # Codreanu Table VIII: ~2.2 (today's report: ~0.02)
    assert sums["wd_half"] == pytest.approx(sums["wd_full"] / 2, rel=0.01)
    for r in runs:
        cfg = load_config(ROOT / r.config, list(r.overrides))
        assert cfg.train.global_batch // (pl.RANKS * cfg.train.accumulation) == 32
    # paired: the arms differ only in weight decay and the collapse options
    common = [set(o for o in r.overrides if "weight_decay" not in o and "collapse" not in o)
              for r in runs]
    assert all(c == common[0] for c in common)


@pytest.mark.parametrize("mode", [ex.QUICK, ex.FULL, ex.select_mode(False, 3, lm_full_text=True),
                                  ex.select_mode(True, lm_full_text=True)],
                         ids=["quick", "full", "full-lm-full-text", "quick-lm-full-text"])
def test_every_planned_run_is_a_config_the_trainer_accepts(mode):
    for run in _full_set(mode):
        task = "lm" if run.kind == "lm" else "image"
        cfg = load_config(ROOT / run.config, list(run.overrides), world_size=pl.RANKS, task=task)
        if run.kind == "lm":
            assert cfg.lm.eval_split == "test"  # nothing in claim 7 is tuned
            continue
        build_schedule(cfg, steps_per_epoch=budget.FIT_IMAGES // cfg.train.global_batch)
        assert cfg.data.train_split == "fit"
        # tuned choices read val; only claim 6 (nothing tuned) evaluates test during training
        assert cfg.data.eval_split == ("test" if run.kind == "collapsed" else "val")


def test_date_is_tuned_at_b0_only_and_scaled_untouched():
    runs = [r for r in _full_set() if r.experiment == "date"]
    tuned = [r for r in runs if r.tune]
    assert {r.batch for r in tuned} == {ex.FULL.date_batches[0]} and len(tuned) == 3
    def recipe(run):
        return {o for o in run.overrides if "global_batch" not in o and "seed" not in o}
    best = next(r for r in tuned if r.value == 1.0)  # the simulated sweep's best
    scaled = [r for r in runs if not r.tune]
    assert scaled and all(recipe(r) == recipe(best) for r in scaled)


def test_lars_seeds_and_batches_follow_the_best_of_the_sweep():
    mode = replace(ex.FULL, seeds=2, lars_all=True)
    first = ex.plan(mode, {})
    assert not [r for r in first if r.method == "lars" and not r.tune]
    sweep = [r for r in first if r.tune == "nobn-lars-b2048"]
    assert [r.value for r in sweep] == [0.5, 1.0, 2.0]
    results = {r.name: {"top1": [0.5, 0.7, 0.6][i]} for i, r in enumerate(sweep)}  # the middle
    after = [r for r in ex.plan(mode, results) if r.experiment == "nobn" and r.method == "lars"
             and not r.tune]
    assert {(r.batch, r.seed) for r in after} == {(512, 0), (1024, 0), (2048, 1), (512, 1), (1024, 1)}
    assert all(f"--optim.base_lr={pl.lars_gamma(pl.LENET, r.batch):g}" in r.overrides for r in after)


def test_a_sweep_whose_best_is_at_an_edge_is_extended_then_settles():
    def lars(runs):
        return [r for r in runs if r.tune == "nobn-lars-b2048"]
    sweep = lars(ex.plan(ex.FULL, {}))
    # the lowest multiple wins: half of it is tried next, nothing waits on the sweep before
    results = {r.name: {"top1": 0.9 - r.value / 100} for r in sweep}
    runs = ex.plan(ex.FULL, results)
    assert sorted(r.value for r in lars(runs)) == [0.25, 0.5, 1.0, 2.0]
    results.update({r.name: {"top1": 0.9 - r.value / 100} for r in lars(runs)})
    runs = ex.plan(ex.FULL, results)
    assert sorted(r.value for r in lars(runs)) == [0.125, 0.25, 0.5, 1.0, 2.0]
    results.update({r.name: {"top1": 0.9 - r.value / 100} for r in lars(runs)})
    assert len(lars(ex.plan(ex.FULL, results))) == 5  # SWEEP_EXTENSIONS = 2
    assert sw.sweep_edges(lars(runs), results) == [("nobn-lars-b2048", 0.125)]
    interior = {r.name: {"top1": 0.9 - abs(r.value - 1.0) / 100} for r in sweep}
    assert len(lars(ex.plan(ex.FULL, interior))) == 3 and sw.sweep_edges(sweep, interior) == []


# ---------------------------------------------------------------------------- report

def _finish(out_dir: Path, run, value: float, hits: bool = False) -> None:
    """A run folder as the runner leaves it (summary, test evaluation, metrics); with hits,
    which test images each model got right (the first value x 10,000)."""
    def right(top1):
        return {"top1_hits": encode_hits(_hits(round(top1 * 10000)))} if hits else {}
    folder = out_dir / run.name
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({"args": run.args(),
                                                        "provenance": "commit `abc`"}))
    loss = float("nan") if run.method == "goyal" and run.batch >= 1024 else 1.0
    lines = [{"tag": "train", "epoch": e / 2, "lr": 0.1, "loss": loss} for e in range(1, 9)]
    if any(o == "--optim.date=true" for o in run.overrides):
        for i, line in enumerate(lines):
            line["date_ratio"] = {"min": 0.05, "p10": 0.5 + i, "p50": 3.0 + i, "p90": 30.0,
                                  "max": 80.0, "at_lower": 0.1, "at_upper": 0.5 - i / 20}
            if run.batch > 128:  # the raw ratio is logged since 2026-12-07; older runs lack it
                line["date_ratio"].update(raw_p50=41.0 + i, raw_p90=400.0 + i)
    if run.kind == "collapsed":
        cfg = load_config(ROOT / run.config, list(run.overrides))
        (folder / "config.toml").write_text(to_toml(cfg))
        (folder / "summary.json").write_text(json.dumps({"top1": value, "wall_time_s": 7.0}))
        branches = [{"name": f"{run.name}-c{k}", "from_epoch": 2.0 * k, "epochs": 0.5,
                     "top1": value - 0.01 * k, "top5": 0.99, "count": 10000,
                     **right(value - 0.01 * k)}
                    for k in (1, 2)]
        (folder / "collapsed_ensemble.json").write_text(json.dumps({
            "main": {"epochs": 6.0, "top1": value}, "extra_epochs": 1.0, "branches": branches,
            "snapshots": [{"epoch": 2.0 * k, "top1": value - 0.02} for k in (1, 2)],
            "ensemble": {"top1": value + 0.02, "top5": 0.99, "count": 10000,
                         "members": [b["name"] for b in branches], **right(value + 0.02)}}))
    elif run.kind == "lm":
        (folder / "summary.json").write_text(json.dumps({"perplexity": 100 / value, "wall_time_s": 5.0}))
        # 300 sentences of 10 targets: a pattern every run shares, each run's own wiggle
        nll = math.log(100 / value) * 10 + np.sin(np.arange(300.0)) + 0.1 * np.cos(
            np.arange(300.0) * (1 + len(run.name)))
        nll += math.log(100 / value) * 10 - nll.mean()  # the perplexity of the summary
        (folder / "test_eval.json").write_text(json.dumps(
            {"split": "test", "perplexity": 100 / value, "count": 3000,
             "sentence_nll": nll.tolist()}))
        lines += [{"tag": "eval", "epoch": e, "perplexity": 100 / value} for e in (1.0, 2.0)]
    else:
        (folder / "summary.json").write_text(json.dumps(
            {"top1": value, "steps": budget.steps_of(run), "wall_time_s": 5.0}))
        (folder / "test_eval.json").write_text(json.dumps(
            {"snapshots": [{"path": "final.pt", "count": 10000, "top1": value - 0.002, "top5": 0.99,
                            **right(value - 0.002)}],
             "ensemble": {"count": 10000, "top1": value - 0.002, "top5": 0.99}}))
        lines += [{"tag": "eval", "epoch": e, "top1": value} for e in (1.0, 2.0)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_report_from_run_folders_names_every_claim_and_missing_run(tmp_path):
    runs = ex.plan(ex.QUICK, {})
    missing = next(r for r in runs if r.method == "wd_half")
    for i, run in enumerate(runs):
        if run is not missing:
            _finish(tmp_path / "runs", run, 0.80 + 0.001 * i)
    runs, results = ex.settle(ex.QUICK, tmp_path / "runs")
    assert missing.name not in results and len(results) == len(runs) - 1
    text = rep.write_report(ex.QUICK, runs, results, tmp_path / "runs", tmp_path / "docs").read_text()
    assert "QUICK MODE" in text and "PARTIAL SET" in text and "commit `abc`" in text
    for claim in ("1 (BN)", "2 (BN)", "3 (no BN)", "Claim 4", "5a", "5b", "Claim 6", "Claim 7",
                  "What changed since the previous report"):
        assert claim in text
    assert "not run yet" not in text.split("## Summary")[1].split("## What changed")[0]
    assert f"| `{missing.name}` | not run yet |" in text
    assert "diverged (loss NaN)" in text and "tensors at upper bound" in text
    rows = [line for line in text.splitlines() if line.startswith("| DATE B=")]
    assert "| 3 / 7 / 10 | — (not logged) |" in rows[0] and "| 3 / 7 / 10 | 41 / 45 / 48 |" in rows[1]
    assert "ensemble of 2 branches" in text and "cost 1 epochs beyond" in text
    for png in ("scaling_bn", "scaling_nobn", "curves_bn", "collapse", "cyclic", "lstm", "date_ratio"):
        assert (tmp_path / "docs" / f"results_{png}.png").stat().st_size > 1000


def test_date_ratio_plot_shows_the_raw_ratio_of_runs_that_logged_it(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, plt, path: drawn.update(
        labels=fig.axes[0].get_legend_handles_labels()[1]) or plt.close(fig))
    runs = [r for r in ex.plan(ex.QUICK, {}) if r.experiment == "date"]
    for run in runs:  # _finish logs the raw ratio at batches above 128 only
        _finish(tmp_path, run, 0.9)
    older, newer = (next(r for r in runs if r.batch == b) for b in (128, 1024))
    plots.plot_date_ratio(tmp_path, {"old": older.name, "new": newer.name}, tmp_path / "r.png")
    assert drawn["labels"] == ["old: median, p10-p90", "new: median, p10-p90",
                               "new: raw median, raw p90 (before the bounds)"]


def test_curve_plots_keep_every_run_distinguishable_and_their_legend_off_the_data(tmp_path,
                                                                                  monkeypatch):
    # claim 7's plot has 12 curves (2 arms x 3 seeds x 2 texts), beyond the 10-colour cycle:
    # two runs drawn alike cannot be told apart, and a legend over the axes hides the curves
    drawn = {}

    def keep(fig, plt, path):
        ax = fig.axes[0]
        drawn.update(styles=[(line.get_color(), line.get_linestyle()) for line in ax.lines],
                     axes=ax.get_position())
        fig.canvas.draw()
        box = ax.get_legend().get_window_extent().transformed(fig.transFigure.inverted())
        drawn.update(box=box)
        plt.close(fig)
    monkeypatch.setattr(plots, "_save", keep)
    runs = [r for r in ex.plan(ex.QUICK, {}) if r.kind == "image"][:4]
    for run in runs:
        _finish(tmp_path, run, 0.9)
    named = {f"run {i}": runs[i % 4].name for i in range(12)}
    plots.plot_curves(tmp_path, named, tmp_path / "c.png", key="top1", ylabel="y", title="t")
    assert len(drawn["styles"]) == 12 and len(set(drawn["styles"])) == 12
    assert drawn["box"].x0 >= drawn["axes"].x1  # beside the axes, not over them


def test_verdicts_pair_the_test_noise_of_runs_that_saved_their_per_image_hits(tmp_path):
    def bullets(hits):
        out = tmp_path / f"runs{hits}"
        for i, run in enumerate(ex.plan(ex.QUICK, {})):
            _finish(out, run, 0.80 + 0.001 * i, hits)
        runs, results = ex.settle(ex.QUICK, out)
        text = rep.write_report(ex.QUICK, runs, results, out, tmp_path / "docs").read_text()
        return {line.split(":")[0]: line for line in text.splitlines()
                if line.startswith("- **Claim")}
    paired, alone = bullets(True), bullets(False)
    for claim in ("2 (BN)", "3 (no BN)", "4", "5a", "5b", "6"):
        assert "test noise paired over the test images" in paired[f"- **Claim {claim}"]
        assert "paired over the test images" not in alone[f"- **Claim {claim}"]


def test_a_partial_set_reports_the_claims_not_run_yet(tmp_path):
    runs = _full_set()
    _finish(tmp_path / "runs", runs[0], 0.9)  # only the BN baseline has finished
    runs, results = ex.settle(ex.FULL, tmp_path / "runs")
    text = rep.write_report(ex.FULL, runs, results, tmp_path / "runs", tmp_path / "docs").read_text()
    summary = text.split("## Summary")[1].split("## What changed")[0]
    assert "| 1 (BN) |" in summary and "**reference**" in summary
    for claim in ("| 4 |", "| 5a |", "| 6 |", "| 7 |", "| 2 (no BN) |"):
        row = next(line for line in summary.splitlines() if line.startswith(claim))
        assert "**not run yet**" in row
    assert "PARTIAL SET" in text and "1 of the" in text


def test_claim7_with_two_seeds_shows_each_seed_their_mean_and_each_ratio(tmp_path):
    mode = ex.select_mode(quick=True, seeds=2)
    out = tmp_path / "runs"
    planned = ex.plan(mode, {})
    _finish(out, next(r for r in planned if r.experiment == "date"), 0.9)  # claim 4 shows ratios
    for run in planned:
        if run.experiment == "lstm":  # perplexity 100 / value: 200 at seed 0, 250 at seed 1
            _finish(out, run, 0.5 if run.seed == 0 else 0.4)
    runs, results = ex.settle(mode, out)
    text = rep.write_report(mode, runs, results, out, tmp_path / "docs").read_text()
    claim7 = text.split("## Claim 7")[1]
    for method, batch in (("baseline", 20), ("date", 160)):
        assert f"| {method} | {batch} | 200.0 / 250.0 | 225.00 ± 35.36 (n=2) |" in claim7
    assert "+0.0%" in claim7  # the verdict compares the means
    assert "the test text's noise counted over blocks" in claim7  # 3 blocks of 100 sentences
    texts = [[json.loads((out / r.name / "test_eval.json").read_text())["sentence_nll"]
              for r in planned if r.experiment == "lstm" and r.method == m]
             for m in ("baseline", "date")]
    noise = vd.text_noise(*texts, 3000)
    assert ("The test text's own noise of the difference between the runs on 20% of the "
            f"training text: {noise.test:.2%} (of perplexity), over 3 blocks") in claim7
    assert noise.test > 0
    labels = [line.split(" |")[0] for line in text.splitlines() if line.startswith("| LSTM DATE")]
    assert labels == ["| LSTM DATE B=160", "| LSTM DATE B=160 seed 1"]


def test_plan_of_an_interrupted_set_marks_its_finished_runs_and_times_the_rest(tmp_path, capsys):
    mode = ex.select_mode(quick=False, seeds=2)
    whole = _full_set(mode)
    assert [r.value for r in whole[1:3]] == [0.5, 1.0]  # two of DATE's eta0 sweep: 1 is best
    for run in whole[:3]:
        _finish(tmp_path, run, 0.9 if run.value == 1.0 else 0.8)
    ex.print_plan(mode, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    done = [line for line in lines if line.endswith("(finished)")]
    assert [line.split()[2] for line in done] == [r.name for r in whole[:3]]
    left = sum(r.estimate_s for r in whole[3:]) / 3600
    assert f"{len(whole) - 3} of {len(whole)} runs to go; about {left:.1f} h" in lines[-1]
    ex.print_plan(mode, tmp_path / "none")  # no run folders yet: the whole set to go
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{len(whole)} of {len(whole)} runs")


def test_claim7_with_a_seed_still_running_compares_the_seeds_both_arms_have(tmp_path):
    mode = ex.select_mode(quick=True, seeds=2)
    out = tmp_path / "runs"
    for run in ex.plan(mode, {}):
        if run.experiment == "lstm" and (run.seed == 0 or run.method == "baseline"):
            _finish(out, run, 0.5 if run.seed == 0 else 0.25)  # baseline seed 1: 400
    runs, results = ex.settle(mode, out)
    text = rep.write_report(mode, runs, results, out, tmp_path / "docs").read_text()
    bullet = next(line for line in text.splitlines() if line.startswith("- **Claim 7"))
    assert "perplexity 200.0 vs baseline 200.0" in bullet  # seed 0 only: DATE has no seed 1
    assert "still to finish: 1 run(s)" in bullet


def test_a_changed_command_is_run_again(tmp_path):
    run = ex.plan(ex.QUICK, {})[0]
    _finish(tmp_path, run, 0.9)
    assert run.name in ex.read_results(tmp_path, [run])
    changed = replace(run, overrides=run.overrides + ("--train.seed=5",))
    assert ex.read_results(tmp_path, [changed]) == {}


def test_settle_plans_chained_extensions_from_run_folders(tmp_path):
    def lars(runs):
        return sorted((r for r in runs if r.tune == "nobn-lars-b2048"), key=lambda r: r.value)
    for r in lars(ex.plan(ex.FULL, {})):
        _finish(tmp_path, r, 0.5 if r.value == 0.5 else 0.4)  # the lowest wins
    runs, results = ex.settle(ex.FULL, tmp_path)
    (ext,) = [r for r in lars(runs) if r.name not in results]
    assert ext.value == 0.25
    _finish(tmp_path, ext, 0.6)  # it wins too: settle plans the next without another call
    runs, results = ex.settle(ex.FULL, tmp_path)
    assert [r.value for r in lars(runs) if r.name not in results] == [0.125]


def test_a_resumed_runs_wall_time_counts_every_process_once(tmp_path):
    run = ex.plan(ex.QUICK, {})[0]
    _finish(tmp_path, run, 0.9)
    folder = tmp_path / run.name
    alone = ex.read_results(tmp_path, [run])[run.name]["wall_time_s"]
    rows = [{"tag": "start", "time": 1.0, "step": 0, "resumed_from": None},
            {"tag": "train", "time": 70.0, "step": 9},  # killed after this: 70 s spent
            {"tag": "start", "time": 2.0, "step": 8, "resumed_from": "step_8.pt"},
            {"tag": "train", "time": 30.0, "step": 9},
            # the trainer's summary: 60 s saved in step_8.pt's checkpoint + this process's 30 s
            {"tag": "summary", "time": 30.0, "wall_time_s": 90.0}]
    (folder / "summary.json").write_text(json.dumps({"top1": 0.9, "wall_time_s": 90.0}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ex.read_results(tmp_path, [run])[run.name]["wall_time_s"] == 70.0 + 30.0
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    (folder / "summary.json").write_text(json.dumps({"top1": 0.9, "wall_time_s": alone}))
    assert ex.read_results(tmp_path, [run])[run.name]["wall_time_s"] == alone  # not resumed
