"""tools/experiments/: the plan is complete, in the papers' regime and within the time
budget, and every run is a configuration the trainers accept; the sweep and verdict rules;
the report from run folders, of a whole set and of a partial one. The runner's tests are in
test_experiments_runner.py. No accuracy thresholds."""
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hpcsgd.config import load_config, to_toml
from hpcsgd.run.hits import encode_hits
from hpcsgd.schedule.plan import build_schedule

from tools.experiments import plan as pl
from tools.experiments import plots
from tools.experiments import report as rep
from tools.experiments import run as ex
from tools.experiments import sweep as sw
from tools.experiments import verdicts as vd

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
    assert max(r.batch for r in images) / pl.FIT_IMAGES <= 0.05  # the papers' largest: 2.5-5%
    for group in ("bn", "nobn", "date"):
        big = max((r for r in images if r.experiment == group), key=lambda r: r.batch)
        assert big.batch == 2048 and pl.steps_of(big) >= vd.MIN_STEPS
    date = sorted({r.batch for r in runs if r.experiment == "date"})
    assert date[-1] == 8 * date[0]  # DATE's LeNet claim: 8x
    # the seed-0 run of every claim comes before any other seed; BN and DATE lead
    order = [r.experiment for r in runs]
    assert order[0] == "bn" and order.index("date") < order.index("nobn") < order.index("lstm")
    first_seed1 = next((i for i, r in enumerate(runs) if r.seed > 0), len(runs))
    assert all(r.seed == 0 for r in runs[:first_seed1]) and "lstm" in order[:first_seed1]


def test_claim5_lets_weight_decay_act_with_32_images_per_rank_and_paired_seeds():
    runs = [r for r in _full_set() if r.experiment == "collapse"]
    sums = {r.method: pl.lr_wd_sum(r) for r in runs if r.seed == 0}
    assert 1.0 <= sums["wd_full"] <= 2.5  # Codreanu Table VIII: ~2.2 (today's report: ~0.02)
    assert sums["wd_half"] == pytest.approx(sums["wd_full"] / 2, rel=0.01)
    for r in runs:
        cfg = load_config(ROOT / r.config, list(r.overrides))
        assert cfg.train.global_batch // (pl.RANKS * cfg.train.accumulation) == 32
    # paired: the arms differ only in weight decay and the collapse options
    common = [set(o for o in r.overrides if "weight_decay" not in o and "collapse" not in o)
              for r in runs]
    assert all(c == common[0] for c in common)


@pytest.mark.parametrize("mode", [ex.QUICK, ex.FULL], ids=["quick", "full"])
def test_every_planned_run_is_a_config_the_trainer_accepts(mode):
    for run in _full_set(mode):
        task = "lm" if run.kind == "lm" else "image"
        cfg = load_config(ROOT / run.config, list(run.overrides), world_size=pl.RANKS, task=task)
        if run.kind == "lm":
            assert cfg.lm.eval_split == "test"  # nothing in claim 7 is tuned
            continue
        build_schedule(cfg, steps_per_epoch=pl.FIT_IMAGES // cfg.train.global_batch)
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


def test_sweep_rules():
    assert sw.edge_extension([4.0, 8.0, 16.0], [0.80, 0.85, 0.70]) is None    # interior best
    assert sw.edge_extension([4.0, 8.0, 16.0], [0.86, 0.85, 0.70]) == 2.0     # lowest: halve
    assert sw.edge_extension([4.0, 8.0, 16.0], [0.80, 0.85, 0.90]) == 32.0    # highest: double
    assert sw.edge_extension([8.0, 4.0, 16.0, 2.0], [0.8, 0.9, 0.7, 0.85]) is None  # by value
    assert sw.edge_extension([8.0], [0.9]) is None                               # no sweep
    assert sw.best_value([4.0, 8.0, 16.0], [0.85, 0.85, 0.7]) == 4.0            # tie: earlier


def test_evidence_names_the_two_standard_error_band_it_compares_with():
    # "0.53 points from the threshold, within 2 standard errors (0.34)" read as a band of
    # 0.34 that 0.53 is outside of; the band is 2 x 0.34 = 0.68
    weak = vd.strength(0.0053, 0.0034, seeds=1)
    assert weak.startswith("weak") and "0.68" in weak and "0.53" in weak
    clear = vd.strength(0.0153, 0.0034, seeds=1)
    assert clear.startswith("indicative") and "0.68" in clear


def test_two_seeds_that_agree_by_chance_do_not_make_a_strong_call():
    # claim 4 on two seeds: DATE's loss at 8x was -0.69 and -0.72 points, a seed spread of
    # 0.03 points that the rule read as "strong" (0.31 points > 2 x 0.03). The seeds share
    # one test set of 10,000 images, whose sampling noise (~0.27 points at 92%) no number of
    # seeds averages away, and the spread of two values is itself a rough estimate
    assert vd.standard_error([0.9200, 0.9201]) >= vd.standard_error([0.92005])  # same mean
    v = vd.verdict_keeps([0.9213, 0.9215], {2048: [0.9144, 0.9143]}, [2048], steps=816)
    assert v.word == "inconclusive" and v.strength.startswith("weak")
    assert vd.strength(0.05, 0.003, seeds=2).startswith("indicative")
    assert "2 seeds" in vd.strength(0.05, 0.003, seeds=2)
    assert vd.strength(0.05, 0.003, seeds=3).startswith("strong")


def test_verdict_rules():
    three = lambda m: [m - 0.001, m, m + 0.001]  # noqa: E731  three seeds, tight spread
    assert vd.verdict_goyal(three(0.90), {512: three(0.899), 2048: three(0.85)}).word == "reproduced"
    assert vd.verdict_goyal(three(0.90), {512: three(0.905), 2048: three(0.90)}).word == "not reproduced"
    assert vd.verdict_goyal(three(0.90), {512: three(0.80)}).word == "partly reproduced"
    assert vd.verdict_goyal(three(0.90), {512: three(0.889)}).word == "inconclusive"  # on the line
    assert vd.verdict_goyal([], {512: [0.8]}).word == "not measured"
    v = vd.verdict_keeps(three(0.90), {2048: three(0.70)}, [2048], steps=816)
    assert v.word == "not reproduced" and v.strength.startswith("strong")
    v = vd.verdict_keeps([0.90], {2048: [0.95]}, [2048], steps=96)
    assert v.word == "reproduced" and "only 96 steps" in v.strength
    assert vd.verdict_keeps([0.90], {2048: [0.95]}, [2048], steps=816).strength.startswith("indicative")
    assert vd.verdict_keeps([0.90], {}, [2048]).word == "not measured"
    assert vd.verdict_better(three(0.90), [0.91, 0.912, 0.909]).word == "reproduced"
    assert vd.verdict_better([0.90], [0.902]).word == "inconclusive"  # one seed: test noise
    assert vd.verdict_better([0.90], [0.85]).word == "not reproduced"
    assert vd.verdict_ensemble([0.90, 0.91], 0.93).word == "reproduced"
    assert vd.verdict_ensemble([0.90, 0.91], 0.905).word == "inconclusive"
    v = vd.verdict_lm([100.0], [104.0])
    assert v.word == "reproduced" and v.strength.startswith("indicative: one seed")
    assert vd.verdict_lm([100.0], [120.0]).word == "not reproduced"
    # 2+ seeds: the mean perplexities, inconclusive within 2 standard errors of the 5% line
    v = vd.verdict_lm([100.0, 102.0], [104.0, 107.0])  # +4.5%, SE of the ratio ~1.8%
    assert v.word == "inconclusive" and "+4.5%" in v.reason and v.strength.startswith("weak")
    v = vd.verdict_lm([100.0, 100.2], [103.0, 103.2])  # +3.0%, SE ~0.1%
    assert v.word == "reproduced" and v.strength.startswith("indicative") and "2 seeds" in v.strength
    v = vd.verdict_lm([100.0, 100.2, 100.1], [110.0, 110.2, 110.1])
    assert v.word == "not reproduced" and v.strength.startswith("strong")
    assert vd.verdict_lm([], [104.0]).word == "not measured"
    # a diverged run's perplexity is not finite: DATE's fails the claim, the baseline's voids it
    v = vd.verdict_lm([100.0, 101.0], [math.inf, 105.0])
    assert v.word == "not reproduced" and "not finite in 1 of 2 seeds" in v.reason
    assert vd.verdict_lm([math.nan], [100.0]).word == "not measured"
    assert vd.fmt([math.inf, 1.0], pct=False).startswith("inf")


def _hits(n_right: int, flip: range = range(0), n: int = 10000):
    """Per-image top-1 hits: the first n_right images right, then the images in flip inverted."""
    hits = np.arange(n) < n_right
    hits[list(flip)] ^= True
    return hits


def test_paired_test_noise_is_the_spread_of_the_per_image_differences():
    a, b = _hits(9200), _hits(9200, range(9100, 9300))  # b: 100 right images more, 100 fewer
    d = b.astype(float) - a
    assert vd.paired_test_se([a], [b]) == pytest.approx(d.std(ddof=1) / 100)  # 0.0014
    assert vd.paired_test_se([a], [a]) == 0.0
    # over seeds: each image's share of the seeds that got it right
    assert vd.paired_test_se([a, a], [b, a]) == pytest.approx(vd.paired_test_se([a], [b]) / 2)
    assert vd.paired_test_se([a], [b, None]) is None  # a run without per-image results
    assert vd.paired_test_se([a], [_hits(9000, n=9999)]) is None  # not the same images
    assert vd.paired_test_se([], [b]) is None
    # independent binomials of two ~92% runs: 0.0038; the same two runs paired: 0.0014
    assert vd.diff_se([0.92], [0.92]) > 2.5 * vd.diff_se([0.92], [0.92], test=0.0014)
    assert vd.diff_se([0.92, 0.93], [0.92], test=0.0) == pytest.approx(0.005)  # the seeds' part


def test_evidence_never_prints_a_margin_and_its_band_as_the_same_number():
    text = vd.strength(0.003104, 0.00155, 2)  # beyond 2 SE by 0.0004 points
    assert text.startswith("indicative") and "0.3104 points from" in text and "= 0.3100 points" in text
    assert "0.52 points from" in vd.strength(0.0052, 0.0013, 2)  # far apart: 2 decimals


def test_verdicts_with_paired_test_noise_can_call_what_independent_noise_cannot():
    # LARS 0.5 point below the baseline (0.5 inside the 1-point tolerance), one seed each
    v = vd.verdict_keeps([0.92], {2048: [0.915]}, [2048], steps=816)
    assert v.word == "inconclusive" and "paired" not in v.strength
    v = vd.verdict_keeps([0.92], {2048: [0.915]}, [2048], steps=816, test_se={2048: 0.0014})
    assert v.word == "reproduced" and "paired over the test images" in v.strength
    v = vd.verdict_keeps([0.92], {2048: [0.915]}, [2048], steps=816, test_se={2048: None})
    assert v.word == "inconclusive"  # no per-image results: independent test sets as before
    v = vd.verdict_goyal([0.92], {1024: [0.9125], 2048: [0.905]}, test_se={1024: 0.001, 2048: 0.001})
    assert v.word == "reproduced" and "paired" in v.strength
    assert vd.verdict_goyal([0.92], {1024: [0.9125], 2048: [0.905]}).word == "inconclusive"
    assert vd.verdict_better([0.92], [0.925]).word == "inconclusive"
    v = vd.verdict_better([0.92], [0.925], test_se=0.001)
    assert v.word == "reproduced" and "paired" in v.strength
    assert vd.verdict_ensemble([0.91, 0.92], 0.924).word == "inconclusive"
    assert vd.verdict_ensemble([0.91, 0.92], 0.924, test_se=0.001).word == "reproduced"


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
        lines += [{"tag": "eval", "epoch": e, "perplexity": 100 / value} for e in (1.0, 2.0)]
    else:
        (folder / "summary.json").write_text(json.dumps(
            {"top1": value, "steps": pl.steps_of(run), "wall_time_s": 5.0}))
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


def test_more_seeds_extend_the_full_set_after_its_one_seed_runs(tmp_path):
    two_seeds = ex.select_mode(quick=False, seeds=2)
    one, two = _full_set(), _full_set(two_seeds)
    assert two[:len(one)] == one  # the one-seed set first and unchanged: its runs are kept
    extra = two[len(one):]
    assert extra and {r.seed for r in extra} == {1}
    order = [r.experiment for r in extra]  # claims 1-4 and 7, cheapest first
    assert sorted(set(order), key=order.index) == ["date", "nobn", "lstm", "bn"]
    lstm = {r.name: r for r in one + extra if r.experiment == "lstm"}
    for m in ("baseline-b20", "date-b640"):  # the same command but for the seed
        s0, s1 = lstm[f"lstm-{m}-s0"].overrides, lstm[f"lstm-{m}-s1"].overrides
        assert [o for o in s0 if o not in s1] == ["--train.seed=0"]
        assert [o for o in s1 if o not in s0] == ["--train.seed=1"]
    three = _full_set(ex.select_mode(quick=False, seeds=3))
    assert three[:len(two)] == two  # a third seed after the whole second: seed by seed
    assert {r.seed for r in three[len(two):]} == {2}
    with pytest.raises(ValueError, match="--seeds"):
        ex.select_mode(quick=False, seeds=0)
    out = tmp_path / "runs"
    for run in one + [extra[0]]:
        _finish(out, run, 0.9)
    runs, results = ex.settle(two_seeds, out)
    text = rep.write_report(two_seeds, runs, results, out, tmp_path / "docs").read_text()
    assert "python -m tools.experiments --seeds 2`" in text and "PARTIAL SET" in text
    assert "2 seeds of claims 1-4 and 7" in text and "One seed per configuration" not in text
    runs, results = ex.settle(ex.FULL, out)
    text = rep.write_report(ex.FULL, runs, results, out, tmp_path / "docs").read_text()
    assert "python -m tools.experiments`" in text and "One seed per configuration" in text


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
