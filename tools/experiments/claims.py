"""The claim sections of docs/results.md (tools/experiments/report.py assembles them):
claims 1-4 here, with what the sections share; Codreanu et al.'s claims 5-6 in
claims_codreanu.py, the LSTM's claim 7 in claims_lm.py.

Each `*_section(ctx)` returns (summary rows, body lines) for its claims from whatever runs
have finished: a claim none of whose runs has finished is "not run yet", one whose runs
have partly finished is judged on what exists and says what is still missing. Final numbers
are test top-1 (each image run's final weights, evaluated once on test); sweeps pick on the
validation split, and their tables show validation top-1 only.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hpcsgd.run.hits import decode_hits

from .plan import bn_regime
from .plots import (LABELS, diverged, plot_curves, plot_date_ratio, plot_scaling,
                    ratio_curve)
from .sweep import best_run, sweep_edges
from .verdicts import TOL, Verdict, fmt, paired_noise, verdict_goyal, verdict_keeps

NOT_RUN = Verdict("not run yet", "none of its runs has finished yet")


@dataclass
class Ctx:
    mode: object
    runs: list
    results: dict
    out_dir: Path
    docs: Path

    def mine(self, experiment: str) -> list:
        return [r for r in self.runs if r.experiment == experiment]

    def done(self, runs) -> list:
        return [r for r in runs if r.name in self.results]

    def test(self, run) -> float:
        return self.results[run.name]["test_top1"]

    def hits(self, run):
        """Which test images the run's final weights got right, or None (not saved)."""
        result = self.results[run.name]
        return hits_of(result.get("test_hits"), result.get("test_count"))


def test_cells(ctx: Ctx, runs, of=None) -> dict[tuple[str, int], list]:
    """(method, batch) -> test top-1 of each seed (or of(run)), in seed order. A sweep counts
    once it has finished, by its run with the best *validation* top-1 (its seed 0)."""
    of = of or ctx.test
    cells: dict[tuple[str, int], list] = {}
    sweeps: dict[str, list] = {}
    for r in sorted(runs, key=lambda r: r.seed):
        if r.tune:
            sweeps.setdefault(r.tune, []).append(r)
        elif r.name in ctx.results:
            cells.setdefault((r.method, r.batch), []).append(of(r))
    for planned in sweeps.values():
        best = best_run(planned, ctx.results)
        if best is not None:
            cells.setdefault((best.method, best.batch), []).insert(0, of(best))
    return cells


def noise_against(hits: dict, base_key, keys) -> dict:
    """key -> paired_noise of the cell at key against the cell at base_key."""
    return {k[1]: paired_noise(hits.get(base_key, []), hits.get(k, [])) for k in keys}


def steps_at(ctx: Ctx, runs, batch: int) -> int | None:
    steps = [ctx.results[r.name]["steps"] for r in ctx.done(runs) if r.batch == batch]
    return max(steps) if steps else None


def paired_seeds(ctx: Ctx, runs, a: str, b: str) -> list[int]:
    """The seeds for which arms (methods) a and b of `runs` have both finished."""
    done = [{r.seed for r in ctx.done(runs) if r.method == arm} for arm in (a, b)]
    return sorted(done[0] & done[1])


def pending(ctx: Ctx, runs, verdict: Verdict) -> Verdict:
    left = [r.name for r in runs if r.name not in ctx.results]
    if not left or verdict.word == "not measured":
        return verdict
    return replace(verdict, reason=f"{verdict.reason}; still to finish: {len(left)} run(s)")


def bullets(rows) -> list[str]:
    return [f"- **Claim {c}:** {v.word}: {v.reason}."
            + (f" Evidence: {v.strength}." if v.strength else "") for c, _, v in rows]


def _sweep_table(ctx: Ctx, runs, name: str) -> list[str]:
    planned = [r for r in runs if r.tune]
    if not planned:
        return []
    best = best_run(planned, ctx.results)
    lines = [f"| {name} | validation top-1 |", "|---|---|"]
    for r in sorted(planned, key=lambda r: r.value):
        val = f"{ctx.results[r.name]['top1']:.2%}" if r.name in ctx.results else "— (not finished)"
        mark = " **(chosen)**" if r is best else ""
        lines.append(f"| {_swept_value(r)}{mark} | {val} |")
    edges = sweep_edges(planned, ctx.results)
    note = ("Its best is still at the edge of the values tried after the extensions; a value "
            "beyond it might do better." if edges else
            "Every finished sweep's best has a worse value on each side." if best else
            "The sweep has not finished.")
    return lines + ["", "Where the best was the lowest or highest value tried, the sweep was "
                    "extended (/2 or x2, at most twice). " + note, ""]


def _swept_value(run) -> str:
    return next(o.split("=")[1] for o in run.overrides if o.startswith("--optim.base_lr="))


# ---------------------------------------------------------------------------- claims 1-3

def scaling_section(ctx: Ctx, group: str):
    bn = group == "bn"
    model = "ResNet-20 (BatchNorm)" if bn else "LeNet (no BatchNorm)"
    tag = "BN" if bn else "no BN"
    regime = bn_regime(ctx.mode) if bn else ctx.mode.batches
    stress = () if bn else ctx.mode.stress
    epochs = ctx.mode.bn_epochs if bn else ctx.mode.epochs
    runs = ctx.mine(group)
    claims = [(f"1 ({tag})", f"small-batch SGD baseline, {model}"),
              (f"2 ({tag})", f"linear scaling + warmup hold up to a batch and break down beyond "
                             f"it (Goyal; You et al. 3.2.1), {model}"),
              (f"3 ({tag})", f"LARS + warmup + poly 2 keeps the baseline's accuracy at large "
                             f"batches (You et al. 3.2.3), {model}")]
    title = f"## Claims 1-3 on {model}"
    if not ctx.done(runs):
        return [(c, t, NOT_RUN) for c, t in claims], [title, "", "Not run yet.", ""]
    cells = test_cells(ctx, runs)
    b0, big = regime[0], max(regime)
    steps = steps_at(ctx, runs, big)
    base = cells.get(("baseline", b0), [])
    goyal_runs = [r for r in runs if r.method == "goyal" and r.batch in regime]
    lars_runs = [r for r in runs if r.method == "lars" and r.batch in regime]
    lars_batches = sorted({r.batch for r in lars_runs})
    hits = test_cells(ctx, runs, of=ctx.hits)
    g = pending(ctx, goyal_runs, verdict_goyal(
        base, {b: cells.get(("goyal", b), []) for b in regime[1:]}, steps=steps,
        noise=noise_against(hits, ("baseline", b0), [("goyal", b) for b in regime[1:]])))
    lv = pending(ctx, lars_runs, verdict_keeps(
        base, {b: cells.get(("lars", b), []) for b in lars_batches}, lars_batches, steps=steps,
        noise=noise_against(hits, ("baseline", b0), [("lars", b) for b in lars_batches])))
    ref = Verdict("reference", f"{fmt(base)} at B0 = {b0}") if base else \
        Verdict("not measured", "the baseline has not finished")
    rows = [(c, t, v) for (c, t), v in zip(claims, [ref, g, lv])]
    cols = list(regime) + list(stress)
    head = [f"B = {b}" + (" (beyond the papers)" if b in stress else "") for b in cols]
    table = ["| method | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
    for m in ("baseline", "goyal", "lars"):
        table.append(f"| {LABELS[m]} | " + " | ".join(fmt(cells.get((m, b), [])) for b in cols) + " |")
    png = f"results_scaling_{group}.png"
    plot_scaling(cells, regime, ctx.docs / png, title=f"Fashion-MNIST, {model}, {epochs:g} "
                 "epochs at every batch", stress=stress)
    best = best_run([r for r in lars_runs if r.tune], ctx.results)
    shown = [r for r in runs if r.seed == 0 and (r.batch == big or r.method == "baseline")
             and (not r.tune or r is best)]
    curves = {f"{r.method} B={r.batch}": r.name for r in shown}
    plot_curves(ctx.out_dir, curves, ctx.docs / f"results_curves_{group}.png", key="top1",
                ylabel="validation top-1 [%]", title=f"{model}: validation top-1 (seed 0)")
    gone = [f"`{r.name}`" for r in ctx.done(runs) if diverged(ctx.out_dir, r.name)]
    body = [title, "",
            f"Test top-1 of the final weights after {epochs:g} epochs at every batch (mean ± "
            f"standard deviation over seeds); {steps or '—'} optimizer steps at batch {big}. "
            f"Verdict rule: a method *keeps* the baseline's accuracy when its mean is within "
            f"{TOL * 100:g} percentage point of the baseline's; *inconclusive* when the "
            "difference from that line is within 2 standard errors.", "", *table, "",
            f"![top-1 versus batch]({png})", "", f"![validation top-1](results_curves_{group}.png)",
            "", *bullets(rows[1:]), ""]
    if gone:
        body += ["Runs whose training loss became NaN (diverged; top-1 at chance, 10%): "
                 + ", ".join(gone) + ".", ""]
    sweep = _sweep_table(ctx, lars_runs, f"LARS gamma at batch {big} (seed 0)")
    if sweep:
        body += [f"LARS's gamma was swept at batch {big} and picked on the validation split "
                 "(You et al. tune it per batch; here LARS runs at that batch only), and the "
                 "other seeds use the chosen multiple of the rule gamma0 sqrt(B/B0):", "", *sweep]
    return rows, body


# ---------------------------------------------------------------------------- claim 4

def date_section(ctx: Ctx):
    b0, later = ctx.mode.date_batches[0], sorted(ctx.mode.date_batches[1:])
    big = max(later)
    runs = ctx.mine("date")
    claim = ("4", f"DATE keeps its B0 accuracy with the batch scaled {big // b0}x and nothing "
                  "retuned (DATE 3.6; its LeNet/MNIST example: 1K -> 8K)")
    title = "## Claim 4: DATE, tuned once at B0, scaled without retuning"
    if not ctx.done(runs):
        return [(*claim, NOT_RUN)], [title, "", "Not run yet.", ""]
    cells = test_cells(ctx, runs)
    steps = steps_at(ctx, runs, big)
    hits = test_cells(ctx, runs, of=ctx.hits)
    v = pending(ctx, runs, verdict_keeps(cells.get(("date", b0), []),
                                          {b: cells.get(("date", b), []) for b in later},
                                          later, steps=steps, noise=noise_against(
                                              hits, ("date", b0), [("date", b) for b in later])))
    if ("date", b0) not in cells:
        v = Verdict("not measured", f"the eta0 sweep at B0 = {b0} has not finished")
    sgd = test_cells(ctx, ctx.mine("nobn")).get(("baseline", ctx.mode.batches[0]), [])
    table = ["| batch | x B0 | test top-1 |", "|---|---|---|"]
    for b in [b0, *later, *ctx.mode.stress]:
        note = " (beyond the papers)" if b in ctx.mode.stress else ""
        table.append(f"| {b}{note} | {b // b0} | {fmt(cells.get(('date', b), []))} |")
    body = [title, "",
            f"DATE's own protocol (Algorithm 1) on LeNet, {ctx.mode.epochs:g} epochs: its "
            f"baseline is DATE itself at B0 = {b0} with eta0 picked on the validation split "
            f"(w0 = 2/30 of the run, as DATE's LeNet example); at {', '.join(map(str, later))} "
            "the same eta0 and w0 go through sqrt LR scaling, LEGW and the roller-coaster decay, "
            f"untouched. The verdict compares DATE at {big} with DATE at B0 (within "
            f"{TOL * 100:g} point). For reference, the SGD baseline at batch "
            f"{ctx.mode.batches[0]}: {fmt(sgd)}.", "", *table, "", *bullets([(*claim, v)]), ""]
    body += _sweep_table(ctx, runs, f"eta0 at B0 = {b0} (seed 0)")
    best = best_run([r for r in runs if r.tune], ctx.results)
    named = {f"DATE B={r.batch}": r.name for r in ctx.done(runs)
             if r.seed == 0 and (not r.tune or r is best)}
    for experiment, text in (("lstm", ""), ("lstm-full", " whole text")):  # claim 7's DATE
        named.update({seeded(f"LSTM DATE B={r.batch}{text}", r): r.name
                      for r in sorted(ctx.done(ctx.mine(experiment)), key=lambda r: r.seed)
                      if r.method == "date"})
    body += ratio_lines(ctx, named)
    return [(*claim, v)], body


def seeded(label: str, run) -> str:
    """A plot or table label; seeds beyond the first say which they are."""
    return f"{label} seed {run.seed}" if run.seed else label


def hits_of(text: str | None, count: int | None):
    """Per-image hits as hpcsgd.ensemble packs them, or None (not saved: runs from before
    2026-12-07)."""
    return None if text is None else decode_hits(text, count)


def ratio_lines(ctx: Ctx, named: dict[str, str]) -> list[str]:
    """DATE's layer ratio over training (the trainers log it in every train record)."""
    rows = {label: ratio_curve(ctx.out_dir, name) for label, name in named.items()}
    rows = {k: v for k, v in rows.items() if v}
    if not rows:
        return ["DATE's ratio distribution: no finished DATE run has logged it yet.", ""]
    plot_date_ratio(ctx.out_dir, named, ctx.docs / "results_date_ratio.png")
    table = ["| run | median ratio as applied: start / middle / end | raw median (before the "
             "bounds) | tensors at upper bound: start / end | at lower bound: start / end |",
             "|---|---|---|---|---|"]
    for label, curve in rows.items():
        first, mid, last = curve[0][1], curve[len(curve) // 2][1], curve[-1][1]
        raw = (f"{first['raw_p50']:.3g} / {mid['raw_p50']:.3g} / {last['raw_p50']:.3g}"
               if all("raw_p50" in x for x in (first, mid, last)) else "— (not logged)")
        table.append(f"| {label} | {first['p50']:.3g} / {mid['p50']:.3g} / {last['p50']:.3g} | "
                     f"{raw} | {first['at_upper']:.0%} / {last['at_upper']:.0%} | "
                     f"{first['at_lower']:.0%} / {last['at_lower']:.0%} |")
    return ["DATE's per-layer ratio ||w|| / ||g|| over the layer tensors at the logged steps "
            "(the LSTM's from the gradient before clipping), as applied (clipped to [0.1, 10]) "
            "and raw. Runs from before the trainers logged the raw ratio show only the applied "
            "one, where a median of 10 says that at least half the tensors had ||w|| / ||g|| "
            ">= 10, not how far above it they were:",
            "", *table, "", "![DATE ratio](results_date_ratio.png)", ""]
