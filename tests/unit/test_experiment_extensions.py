"""tools/experiments/: the set beyond its 6-hour one-seed runs (--seeds, --bn-curve,
--collapse-seeds, --cyclic-seeds, --lm-full-text): each comes after the runs before it, which
it keeps, and the report names its command and pairs its runs. The plan and the report
themselves: test_experiments.py."""
import shutil

import pytest

from tools.experiments import plan as pl
from tools.experiments import report as rep
from tools.experiments import run as ex
from test_experiments import _finish, _full_set


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


def test_bn_curve_adds_linear_scaling_between_b0_and_the_largest_batch_last(tmp_path):
    # The 6-hour set gives the BN network B0 and 2048 only; --bn-curve adds linear scaling at
    # the batches between (seed 0), after everything else, so claim 2 can say up to where it
    # held on the BatchNorm network too.
    three = ex.select_mode(quick=False, seeds=3)
    curve = ex.select_mode(quick=False, seeds=3, bn_curve=True)
    before, after = _full_set(three), _full_set(curve)
    assert after[:len(before)] == before  # every run before it unchanged: its runs are kept
    extra = after[len(before):]
    assert [(r.name, r.method, r.seed) for r in extra] == [
        ("bn-goyal-b1024-s0", "goyal", 0), ("bn-goyal-b512-s0", "goyal", 0)]
    goyal = next(r for r in before if r.name == "bn-goyal-b2048-s0")
    for run in extra:  # the same command but for the batch, both ways
        assert {o.split("=")[0] for o in set(run.overrides) ^ set(goyal.overrides)} == {
            "--train.global_batch"}
    assert pl.flags(curve) == " --seeds 3 --bn-curve"
    out = tmp_path / "runs"
    for run in after:
        _finish(out, run, 0.9 if run.method == "baseline" else 0.895)
    runs, results = ex.settle(curve, out)
    text = rep.write_report(curve, runs, results, out, tmp_path / "docs").read_text()
    bn = text[text.index("## Claims 1-3 on ResNet-20"):text.index("## Claims 1-3 on LeNet")]
    assert "| B = 128 | B = 512 | B = 1024 | B = 2048 |" in bn
    assert "512: " in bn and "1024: " in bn  # in claim 2's verdict
    assert "--bn-curve" in text


def test_the_command_line_selects_the_extensions(tmp_path, capsys):
    assert ex.main(["--seeds", "3", "--bn-curve", "--collapse-seeds", "3", "--cyclic-seeds",
                    "2", "--lm-full-text", "--plan", "--out-dir", str(tmp_path / "x")]) == 0
    listed = capsys.readouterr().out
    assert " bn-goyal-b512-s0" in listed and "collapse-wd_half-s2" in listed
    assert " cyclic-s1" in listed and "cyclic-s2" not in listed
    assert " lstm-date-b640-full-s2" in listed
    assert ex.main(["--seeds", "3", "--plan", "--out-dir", str(tmp_path / "x")]) == 0
    listed = capsys.readouterr().out
    assert " bn-goyal-b512-s0" not in listed and "collapse-wd_half-s2" not in listed
    assert " cyclic-s1" not in listed and "-full-s" not in listed


def test_collapse_seeds_pair_more_seeds_of_claim5_after_the_rest(tmp_path):
    # Claim 5's arms share each seed (same init and data order); --collapse-seeds N adds
    # seeds 1..N-1 of all three arms after everything else, and the verdict pairs them.
    base = ex.select_mode(quick=False, seeds=3, bn_curve=True)
    more = ex.select_mode(quick=False, seeds=3, bn_curve=True, collapse_seeds=3)
    before, after = _full_set(base), _full_set(more)
    assert after[:len(before)] == before
    assert [r.name for r in after[len(before):]] == [
        f"collapse-{arm}-s{seed}" for seed in (1, 2)
        for arm in ("wd_full", "wd_half", "wd_half_collapse")]
    seed0 = {r.method: r for r in before if r.experiment == "collapse"}
    for run in after[len(before):]:  # seed 0's command but for the seed
        assert set(run.overrides) ^ set(seed0[run.method].overrides) == {
            f"--train.seed={run.seed}", "--train.seed=0"}
    assert pl.flags(more) == " --seeds 3 --bn-curve --collapse-seeds 3"
    with pytest.raises(ValueError, match="--collapse-seeds"):
        ex.select_mode(quick=False, collapse_seeds=0)
    out = tmp_path / "runs"
    for run in after:
        gain = {"wd_full": 0.0, "wd_half": 0.005, "wd_half_collapse": 0.006}.get(run.method, 0)
        _finish(out, run, 0.9 + gain + 0.001 * run.seed)
    runs, results = ex.settle(more, out)
    text = rep.write_report(more, runs, results, out, tmp_path / "docs").read_text()
    assert "+0.50 points (paired over 3 seed(s))" in text
    assert "3 seeds of claim 5 (`--collapse-seeds`)" in text
    # a claim waits only for its own arms: the collapse arm's last seed concerns 5b, not 5a
    shutil.rmtree(out / "collapse-wd_half_collapse-s2")
    runs, results = ex.settle(more, out)
    text = rep.write_report(more, runs, results, out, tmp_path / "docs").read_text()
    five_a = next(line for line in text.splitlines() if line.startswith("- **Claim 5a:**"))
    five_b = next(line for line in text.splitlines() if line.startswith("- **Claim 5b:**"))
    assert "still to finish" not in five_a and "still to finish: 1 run(s)" in five_b


def test_cyclic_seeds_repeat_claim6_whole_and_pair_each_seeds_ensemble(tmp_path):
    # Claim 6 is one command (cyclic run, collapse branches, their ensemble); --cyclic-seeds N
    # runs it for seeds 1..N-1 after the --bn-curve runs and before claim 5's seeds (the
    # cheaper first), and the verdict pairs each seed's ensemble with its own best branch.
    base = ex.select_mode(quick=False, seeds=3, bn_curve=True, collapse_seeds=3)
    more = ex.select_mode(quick=False, seeds=3, bn_curve=True, collapse_seeds=3, cyclic_seeds=3)
    before, after = _full_set(base), _full_set(more)
    added = [r for r in after if r not in before]
    assert [r.name for r in added] == ["cyclic-s1", "cyclic-s2"]
    assert [r for r in after if r in before] == before  # every other run and its order kept
    first = after.index(added[0])
    assert after[first - 1].name == "bn-goyal-b512-s0"
    assert after[first + 2].name.startswith("collapse-")
    seed0 = next(r for r in before if r.name == "cyclic-s0")
    for run in added:  # seed 0's command but for the seed
        assert run.kind == "collapsed" and run.tool_args == seed0.tool_args
        assert set(run.overrides) ^ set(seed0.overrides) == {f"--train.seed={run.seed}",
                                                             "--train.seed=0"}
    assert pl.flags(more) == " --seeds 3 --bn-curve --collapse-seeds 3 --cyclic-seeds 3"
    with pytest.raises(ValueError, match="--cyclic-seeds"):
        ex.select_mode(quick=False, cyclic_seeds=0)
    out = tmp_path / "runs"
    for run in after:  # _finish: branches value - 0.01 k, ensemble value + 0.02
        _finish(out, run, 0.9 + 0.001 * run.seed, hits=run.kind == "collapsed")
    runs, results = ex.settle(more, out)
    text = rep.write_report(more, runs, results, out, tmp_path / "docs").read_text()
    bullet = next(line for line in text.splitlines() if line.startswith("- **Claim 6:**"))
    assert "mean ensemble 92.10% vs mean best branch 89.10% (+3.00 points, paired over 3 seeds)" \
        in bullet
    assert "3 seeds of claim 6 (`--cyclic-seeds`)" in text
    six = text[text.index("## Claim 6"):text.index("## Claim 7")]
    assert "| 1 | 89.10% | 92.10% | +3.00 |" in six  # a row per seed: best branch, ensemble
    shutil.rmtree(out / "cyclic-s2")
    runs, results = ex.settle(more, out)
    text = rep.write_report(more, runs, results, out, tmp_path / "docs").read_text()
    bullet = next(line for line in text.splitlines() if line.startswith("- **Claim 6:**"))
    assert "paired over 2 seeds" in bullet and "still to finish: 1 run(s)" in bullet


def test_lm_full_text_runs_claim7_on_the_whole_training_text_last(tmp_path, monkeypatch):
    # The 6-hour set trains the LSTM on half of PTB's training text (the budget); the papers
    # use all of it. --lm-full-text adds claim 7's runs on the whole text (every seed of
    # --seeds) after everything else; claim 7 is judged on them once both arms have as many
    # seeds there as on the half text, the other text's reading staying beside it.
    base = ex.select_mode(quick=False, seeds=3, bn_curve=True, collapse_seeds=3, cyclic_seeds=3)
    more = ex.select_mode(quick=False, seeds=3, bn_curve=True, collapse_seeds=3, cyclic_seeds=3,
                          lm_full_text=True)
    before, after = _full_set(base), _full_set(more)
    assert after[:len(before)] == before
    added = after[len(before):]
    assert [r.name for r in added] == [f"lstm-{m}-full-s{s}" for s in (0, 1, 2)
                                       for m in ("baseline-b20", "date-b640")]
    half = {(r.method, r.seed): r for r in before if r.experiment == "lstm"}
    for run in added:  # the half-text run's command but for the text
        assert run.kind == "lm" and run.experiment == "lstm-full"
        assert set(run.overrides) ^ set(half[run.method, run.seed].overrides) == {
            "--lm.train_fraction=1", "--lm.train_fraction=0.5"}
        assert run.estimate_s > 1.8 * half[run.method, run.seed].estimate_s
    assert pl.flags(more).endswith(" --cyclic-seeds 3 --lm-full-text")
    assert pl.flags(ex.select_mode(quick=True, lm_full_text=True)) == " --quick --lm-full-text"

    def ppl(run):  # half text: 200 / 202 / 204 (both arms); whole text: 125 + s, DATE 127.5 + s
        if run.experiment == "lstm":
            return 200.0 + 2 * run.seed
        return (125.0 if run.method == "baseline" else 127.5) + run.seed
    out = tmp_path / "runs"
    for run in before:
        _finish(out, run, 100 / ppl(run) if run.kind == "lm" else 0.9)
    plotted = {}
    monkeypatch.setattr("tools.experiments.claims_lm.plot_curves",
                        lambda out_dir, named, *a, **k: plotted.update(named))

    def claim7():
        runs, results = ex.settle(more, out)
        text = rep.write_report(more, runs, results, out, tmp_path / "docs").read_text()
        return text, next(line for line in text.splitlines() if line.startswith("- **Claim 7:**"))
    text, bullet = claim7()  # no whole-text run yet
    assert "perplexity 202.0 vs baseline 202.0 (+0.0%" in bullet
    assert "on half the training text, seeds 0, 1, 2" in bullet
    assert "still to finish: 6 run(s) on the whole training text" in bullet
    assert "--lm-full-text" in text and "Claim 7 runs on the whole training text too" in text
    _finish(out, added[0], 100 / ppl(added[0]))  # seed 0's baseline alone
    _, bullet = claim7()
    assert "on half the training text" in bullet and "5 run(s) on the whole training text" in bullet
    _finish(out, added[1], 100 / ppl(added[1]))  # seed 0 both arms: 1 seed against 3
    _, bullet = claim7()
    assert "perplexity 202.0 vs baseline 202.0" in bullet.split("; on the whole")[0]
    # the reading beside the verdict names its evidence: one seed is not a strong "reproduced"
    assert "; on the whole training text (seed 0): reproduced, indicative evidence (perplexity " \
           "127.5 vs baseline 125.0 (+2.0%" in bullet
    assert "4 run(s) on the whole training text" in bullet
    for run in added[2:]:
        _finish(out, run, 100 / ppl(run))
    text, bullet = claim7()  # 3 seeds each: the whole text decides
    assert bullet.startswith("- **Claim 7:** reproduced: perplexity 128.5 vs baseline 126.0 (+2.0%")
    assert "on the whole training text, seeds 0, 1, 2; on half the training text (seeds 0, 1, " \
           "2): reproduced, strong evidence (perplexity 202.0 vs baseline 202.0" in bullet
    assert "still to finish" not in bullet
    claim = text[text.index("## Claim 7"):]
    assert "| baseline | 20 | 200.0 / 202.0 / 204.0 |" in claim  # the half text's, beside
    assert "| baseline | 20 | 125.0 / 126.0 / 127.0 |" in claim
    assert "noise of the difference between the runs on the whole training text" in claim
    assert {"baseline B=20 whole text", "date B=640 whole text seed 2", "date B=640"} <= set(plotted)
    assert "LSTM DATE B=640 whole text seed 1" in text  # claim 4's ratio plot names it
    # a diverged whole-text baseline voids that text's reading, not the claim
    for run in added:
        shutil.rmtree(out / run.name)
    for run in added:
        _finish(out, run, float("nan") if run.method == "baseline" else 100 / ppl(run))
    _, bullet = claim7()
    assert "perplexity 202.0 vs baseline 202.0" in bullet.split("; on the whole")[0]
    assert "on the whole training text (seeds 0, 1, 2): not measured (the baseline's " \
           "perplexity is not finite" in bullet
