"""Claim 7 in docs/results.md: DATE scales the LSTM language model's batch on the Penn
Treebank without losing perplexity (DATE 4.1.2). Sections as in claims.py.

The set trains on a share of PTB's training text (the budget); --lm-full-text adds the same
runs on all of it, as the papers, and the claim is then judged on those as soon as both arms
of a seed have finished. The test text's own sampling noise is counted from the runs'
per-sentence NLLs (hpcsgd.lm.score; verdicts.text_noise)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .claims import NOT_RUN, Ctx, bullets, paired_seeds, seeded
from .plan import lm_w0
from .plots import plot_curves
from .verdicts import LM_TOL, TEXT_BLOCK, Verdict, fmt, text_blocks, text_noise, verdict_lm

ARMS = ("baseline", "date")
WHOLE = "the whole training text"


@dataclass
class Reading:
    """Claim 7 read on one text's runs: the seeds both arms finished (an LSTM seed is its
    initial weights, so the arms are compared on those), the test text's noise, each arm's
    per-sentence NLLs on those seeds, the test targets, and the verdict."""
    seeds: list[int]
    noise: object
    texts: list
    count: int
    verdict: Verdict


def lstm_section(ctx: Ctx):
    m = ctx.mode
    part, whole = (sorted(ctx.mine(e), key=lambda r: r.seed) for e in ("lstm", "lstm-full"))
    ratio = max(m.lm_batches) // min(m.lm_batches)
    claim = ("7", f"DATE scales the LSTM/PTB batch {ratio}x without losing perplexity "
                  "(DATE 4.1.2)")
    title = "## Claim 7: LSTM on the Penn Treebank (DATE 4.1.2)"
    if not ctx.done(part + whole):
        return [(*claim, NOT_RUN)], [title, "", "Not run yet.", ""]
    share = "half the training text" if m.lm_fraction == 0.5 else \
        f"{m.lm_fraction:.0%} of the training text"
    readings = {share: _read(ctx, part), WHOLE: _read(ctx, whole) if whole else None}
    # the whole text (the papers') decides once it has as many seeds as the share does, and
    # a verdict: one seed of it does not overrule three of the share
    w, h = readings[WHOLE], readings[share]
    on = WHOLE if w and w.seeds and len(w.seeds) >= len(h.seeds) and \
        w.verdict.word != "not measured" else share
    judged = readings[on]
    reason = f"{judged.verdict.reason}; on {on}, {_seeds(judged.seeds)}"
    for text, other in readings.items():  # the other text's reading, as it stands
        if text != on and other and other.seeds:
            level = f", {other.verdict.level} evidence" if other.verdict.level else ""
            reason += (f"; on {text} ({_seeds(other.seeds)}): {other.verdict.word}{level}"
                       f" ({other.verdict.reason})")
    left = [f"{n} run(s) on {text}" for text, runs in ((share, part), (WHOLE, whole))
            if (n := len([r for r in runs if r.name not in ctx.results]))]
    if left:
        reason += "; still to finish: " + ", ".join(left)
    v = replace(judged.verdict, reason=reason)
    plot_curves(ctx.out_dir, {seeded(f"{r.method} B={r.batch}"
                                     + (" whole text" if r in whole else ""), r): r.name
                              for r in part + whole},
                ctx.docs / "results_lstm.png", key="perplexity", ylabel="test perplexity",
                title="PTB, 2-layer LSTM", log=True)
    tables = [line for runs, name in ((part, share), (whole, WHOLE)) if runs
              for line in (f"On {name}:", "", *_table(ctx, runs), "")]
    body = [title, "",
            f"2-layer LSTM, hidden {m.lm_hidden}, 10,000 words, BPTT 20, {m.lm_epochs:g} epochs "
            f"on {share}" + (" and, with `--lm-full-text`, on the whole of it (the papers')"
                             if whole else "") + "; batch in streams. Baseline: DATE "
            "4.1.2's recipe (momentum 0.9, LR constant for 7/13 of the run after a warmup "
            f"from 0 over w0 = {lm_w0(m):.3g} epochs, LEGW's baseline warmup that DATE scales "
            "by B/B0, then x0.4 after each epoch: multistep with a milestone every epoch, as "
            "hpcsgd has no exponential decay), LR 2 = Zaremba et al.'s step size with "
            "momentum, clip 0.25 per token. DATE: "
            "the baseline's (B0, eta0 = LR / 10, w0) through sqrt scaling, LEGW and the roller "
            f"coaster, untouched. Verdict rule: within {LM_TOL:.0%} of the baseline's "
            "perplexity" + (", judged on the whole text once both arms have finished as many "
                            "seeds there as on the share" if whole else "") + ". DATE's ratio "
            "for these runs is in claim 4's plot.", "", *tables,
            *_text_noise_lines(judged, on), "![lstm](results_lstm.png)", "",
            *bullets([(*claim, v)]), ""]
    return [(*claim, v)], body


def _seeds(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds)) or 'none'}"


def _read(ctx: Ctx, runs) -> Reading:
    seeds = paired_seeds(ctx, runs, *ARMS)
    paired = {a: [ctx.results[r.name] for r in runs if r.method == a and r.seed in seeds]
              for a in ARMS}
    count = next((x.get("test_count") for x in paired["baseline"]), 0)
    texts = [[x.get("test_sentence_nll") for x in paired[a]] for a in ARMS]
    noise = text_noise(*texts, count)
    v = verdict_lm(*([x["perplexity"] for x in paired[a]] for a in ARMS), noise=noise)
    return Reading(seeds, noise, texts, count, v)


def _table(ctx: Ctx, runs) -> list[str]:
    batch = {r.method: r.batch for r in runs}
    ppl = {k: [ctx.results[r.name]["perplexity"] for r in runs  # each finished seed's
               if r.method == k and r.name in ctx.results] for k in batch}
    return ["| run | batch | test perplexity of each seed | mean |", "|---|---|---|---|",
            *(f"| {k} | {batch[k]} | " + (" / ".join(f"{x:.1f}" for x in values)
                                          or "— (no finished run)")
              + f" | {fmt(values, pct=False)} |" for k, values in ppl.items())]


def _text_noise_lines(reading: Reading, text: str) -> list[str]:
    """What the test text's own noise adds to claim 7, and why it is counted in blocks."""
    noise, texts, count = reading.noise, reading.texts, reading.count
    if not reading.seeds:
        return []
    if noise is None:
        return ["The runs saved no per-sentence NLL (hpcsgd.lm.score): the test text's own "
                "noise is not counted.", ""]
    single = text_noise(*texts, count, block=1)
    blocks = len(text_blocks(texts[0][0], count))
    return [f"The test text's own noise of the difference between the runs on {text}: "
            f"{noise.test:.2%} (of perplexity), over {blocks} blocks of about {TEXT_BLOCK} "
            f"consecutive sentences of the test text's {count:,} targets (its words and each "
            "sentence's end), from the two arms' per-sentence NLLs (hpcsgd.lm.score); counted "
            f"sentence by sentence it would be {single.test:.2%}, but neighbouring sentences "
            f"(one article's) differ alike. {blocks} blocks measure it to about "
            f"+-{100 / math.sqrt(2 * (blocks - 1)):.0f}%. It is in the verdict's band: more "
            "seeds cannot shrink it.", ""]
