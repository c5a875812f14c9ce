"""Codreanu et al.'s claims in docs/results.md: half weight decay and the final collapse
(claim 5, Table VIII) and the ensemble of collapsed branches (claim 6, VI and Table XI).
Sections as in claims.py, which holds what they share."""
from __future__ import annotations

import math

from .claims import NOT_RUN, Ctx, bullets, hits_of, paired_seeds, pending
from .budget import lr_wd_sum
from .plots import plot_collapse, plot_cyclic
from .verdicts import fmt, paired_noise, verdict_better, verdict_ensemble


# ---------------------------------------------------------------------------- claim 5

def collapse_section(ctx: Ctx):
    runs = ctx.mine("collapse")
    arms = ("wd_full", "wd_half", "wd_half_collapse")
    claims = [("5a", "half the standard weight decay beats it (Codreanu Table VIII)"),
              ("5b", "a final collapse adds accuracy on top (Codreanu Table VIII)")]
    title = "## Claim 5: half weight decay and the final collapse (Codreanu Table VIII)"
    if not ctx.done(runs):
        return [(c, t, NOT_RUN) for c, t in claims], [title, "", "Not run yet.", ""]
    by_seed = {a: {r.seed: ctx.test(r) for r in ctx.done(runs) if r.method == a} for a in arms}
    hits = {a: {r.seed: ctx.hits(r) for r in ctx.done(runs) if r.method == a} for a in arms}

    def paired(a, b):
        seeds = paired_seeds(ctx, runs, a, b)
        test = paired_noise([hits[a][s] for s in seeds], [hits[b][s] for s in seeds],
                            by_seed=True)
        return verdict_better([by_seed[a][s] for s in seeds], [by_seed[b][s] for s in seeds], test)
    def arms_of(*names):  # each claim waits only for its own arms' runs
        return [r for r in runs if r.method in names]
    v1 = pending(ctx, arms_of("wd_full", "wd_half"), paired("wd_full", "wd_half"))
    v2 = pending(ctx, arms_of("wd_half", "wd_half_collapse"),
                  paired("wd_half", "wd_half_collapse"))
    rows = [(*claims[0], v1), (*claims[1], v2)]
    seed0 = {r.method: r for r in runs if r.seed == 0}
    wd = {a: next(o.split("=")[1] for o in seed0[a].overrides if "weight_decay=" in o) for a in arms}
    table = ["| arm | weight decay | sum over steps of LR x wd | test top-1 |", "|---|---|---|---|"]
    table += [f"| {a} | {wd[a]}{' (x2 in the collapse)' if 'collapse' in a else ''} | "
              f"{lr_wd_sum(seed0[a]):.2f} | {fmt(list(by_seed[a].values()))} |" for a in arms]
    plot_collapse({a: list(by_seed[a].values()) for a in arms}, ctx.docs / "results_collapse.png")
    m = ctx.mode
    body = [title, "",
            f"`{m.collapse_model.name}` at batch {m.collapse_batch} ({m.collapse_batch / 50000:.1%} "
            f"of the fit split; Codreanu: 4096 = 0.3% of ImageNet), BatchNorm over 32 images per "
            f"rank (gradient accumulation, as the paper's 32 per node), {m.collapse_epochs:g} "
            "epochs, linear LR scaling (0.1 x B/128), warmup from 0, linear decay; the arms share "
            "their seed (same initial weights, same data order). The standard weight decay is "
            "chosen so that weight decay can act within the run as in the paper: there, "
            "assuming 90 epochs at LR 1.6 decaying linearly (0.1 x 4096/256; Table VIII "
            "states neither) with 1e-4, the sum of LR x wd is about 2.2 (1.1 at half). "
            "Collapse: the last 7% of the steps, power-2 LR decay from where it was, weight "
            "decay x2 back to the standard, flip + shift kept (Codreanu V-B2 turns off scale/"
            "aspect augmentation, which Fashion-MNIST does not have).", "", *table, "",
            "![collapse](results_collapse.png)", "", *bullets(rows), ""]
    return rows, body


# ---------------------------------------------------------------------------- claim 6

def cyclic_section(ctx: Ctx):
    claim = ("6", "the ensemble of collapsed snapshots beats every member (Codreanu Table XI)")
    title = "## Claim 6: collapsed ensembles (Codreanu VI, Table XI)"
    runs = sorted(ctx.mine("cyclic"), key=lambda r: r.seed)
    done = [r for r in runs if r.name in ctx.results]
    if not done:
        return [(*claim, NOT_RUN)], [title, "", "Not run yet.", ""]
    per_seed = [ctx.results[r.name]["collapsed"] for r in done]
    bests = [max(x.get("branches", []), key=lambda b: b["top1"], default={}) for x in per_seed]
    ensembles = [x.get("ensemble", {}) for x in per_seed]
    judged = [i for i, (b, e) in enumerate(zip(bests, ensembles))  # what verdict_ensemble keeps
              if b and not math.isnan(e.get("top1", math.nan))]
    test = paired_noise(*([hits_of(side[i].get("top1_hits"), side[i].get("count")) for i in judged]
                          for side in (bests, ensembles)), by_seed=True)
    v = pending(ctx, runs, verdict_ensemble(
        [[b["top1"] for b in per_seed[i].get("branches", [])] for i in judged],
        [ensembles[i]["top1"] for i in judged], test))
    cyc, ens = done[0], per_seed[0]  # the first finished seed in full
    plot_cyclic(ctx.out_dir, cyc.name, ens, ctx.docs / "results_cyclic.png")
    branches, top = ens.get("branches", []), ensembles[0].get("top1", math.nan)
    table = ["| model | from epoch | test top-1 | top-5 |", "|---|---|---|---|",
             f"| main cyclic run, final ({ens['main']['epochs']:g} epochs, uncollapsed) | — | "
             f"{ens['main']['top1']:.2%} | — |"]
    table += [f"| snapshot {k} (uncollapsed) | {s['epoch']:.2f} | {s['top1']:.2%} | — |"
              for k, s in enumerate(ens.get("snapshots", []), 1)]
    table += [f"| `{b['name']}`: + {b['epochs']:g} collapse epochs | {b['from_epoch']:.2f} | "
              f"{b['top1']:.2%} | {b['top5']:.2%} |" for b in branches]
    e = ensembles[0]
    table.append(f"| **ensemble of {len(e.get('members', branches))} branches** (mean softmax) "
                 f"| — | **{top:.2%}** | {e.get('top5', math.nan):.2%} |")
    seeds = ["| seed | best branch | ensemble | points |", "|---|---|---|---|"]
    seeds += [f"| {r.seed} | {b.get('top1', math.nan):.2%} | {x.get('top1', math.nan):.2%} | "
              f"{(x.get('top1', math.nan) - b.get('top1', math.nan)) * 100:+.2f} |"
              for r, b, x in zip(done, bests, ensembles)]
    body = [title, "",
            f"LeNet at batch {cyc.batch}, Codreanu's 120-epoch cyclic schedule compressed to "
            f"{ctx.mode.cyclic_epochs:g} epochs (same proportions, half the weight decay); one "
            "`python -m hpcsgd.collapsed_ensemble` command: the cyclic run saves a snapshot at "
            "each cycle end, a collapse branch trains from each (power-2 LR to 0 from the "
            "snapshot's LR, weight decay x2, flip + shift kept), and the ensemble is of the "
            "branches (Table XI's 2c-6c). Test split throughout (nothing is tuned). The "
            f"branches cost {ens.get('extra_epochs', math.nan):g} epochs beyond the main run's "
            f"{ens['main']['epochs']:g}. Seed {cyc.seed}:", "", *table, "",
            *(["Each seed's ensemble against its own best branch (`--cyclic-seeds`):", "",
               *seeds, ""] if len(runs) > 1 else []),
            "![cyclic](results_cyclic.png)", "", *bullets([(*claim, v)]), ""]
    return [(*claim, v)], body
