"""The report's verdict rules: pure functions from measured numbers to a verdict, its reason
and the strength of the evidence.

A verdict's word is "reproduced", "partly reproduced", "not reproduced", "inconclusive" (the
deciding number lies within 2 standard errors of the rule's threshold) or "not measured" (a
run it needs is missing); the report adds "not run yet" for a claim none of whose runs has
finished. The standard error is the test set's sampling noise, which every seed shares,
combined with the seeds' spread when there are 2+ (never less than the seeds' disagreement
image by image, paired_noise); with one seed it understates the seed-to-seed spread. The test
noise of a difference is paired over the test images when the runs saved which images they
got right (paired_noise), else each side's binomial (10,000 images) as if the two had
independent test sets, which overstates it. `strength` says
whether the evidence is enough to call, and whether the step budget at the largest batch was
the papers' regime.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import numpy as np

TOL = 0.01        # "keeps the baseline's accuracy": within 1 percentage point of top-1
LM_TOL = 0.05     # "without losing perplexity": within 5% of the baseline's perplexity
TEST_IMAGES = 10000
MIN_STEPS = 800   # optimizer steps at the largest batch below which a call is weak
STRONG_SEEDS = 3  # seeds a strong call needs: the spread of 2 has one degree of freedom


LEVELS = ("weak", "indicative", "strong")  # evidence, weakest first


@dataclass(frozen=True)
class Verdict:
    word: str
    reason: str
    strength: str = ""

    @property
    def level(self) -> str:
        """The level of the call's evidence, one of LEVELS; "" when no evidence was graded,
        and for "inconclusive", which says it already."""
        level = self.strength.split(":")[0]  # strength() opens with evidence_level's word
        return level if level in LEVELS and self.word != "inconclusive" else ""

    @property
    def called(self) -> str:
        """The verdict as the summary prints it: a call on less than strong evidence names its
        level ("reproduced (indicative)"), so one seed does not read like three."""
        if self.level in LEVELS[:-1]:
            return f"**{self.word}** ({self.level})"
        return f"**{self.word}**"


def stats(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (0 for one value), count); a non-finite value (a
    diverged run's perplexity) makes the mean non-finite and the deviation NaN."""
    if not values:
        return math.nan, math.nan, 0
    if not all(map(math.isfinite, values)):
        return sum(values) / len(values), math.nan, len(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def fmt(values: list[float], pct: bool = True) -> str:
    mean, std, n = stats(values)
    if n == 0:
        return "—"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    spread = f" ± {std * scale:.2f}" if n > 1 else ""
    return f"{mean * scale:.2f}{unit}{spread} (n={n})"


def standard_error(values: list[float]) -> float:
    """Of the mean top-1: the test set's binomial noise, which every seed shares (one test set
    of 10,000 images: no number of seeds averages it away), and with 2+ seeds their spread on
    top. Two seeds that agree by chance so never make a number more precise than its test set."""
    mean, std, n = stats(values)
    test = math.sqrt(mean * (1 - mean) / TEST_IMAGES)
    return math.hypot(test, std / math.sqrt(n)) if n >= 2 else test


@dataclass(frozen=True)
class PairedNoise:
    """What per-image hits tell about the noise of a difference of two arms' mean top-1
    (standard errors, as fractions): `test`, the test set's own sampling noise, and `seeds`,
    per arm (one entry when the arms are paired seed by seed), the seeds' disagreement image by
    image: a floor under that arm's seed spread (0 with one seed). by_seed: measured on arms
    paired seed by seed (verdict_better's), else on independent arms (diff_se's)."""
    test: float
    seeds: tuple[float, ...] = ()
    by_seed: bool = False


def paired_noise(a: list, b: list, by_seed: bool = False) -> PairedNoise | None:
    """The noise of mean(b) - mean(a) when every run of both was evaluated on the same images
    (a and b: each run's per-image top-1 hits in seed order, hpcsgd/run/hits.py). Two runs that
    agree on most images differ far less by chance than two independent test sets would
    (McNemar): the noise is the spread over images of each image's share of b's runs that got
    it right minus a's, over the square root of the image count. None when a run has no
    per-image results or the runs saw different numbers of images.

    With 2+ seeds an image's share also carries the seeds' disagreement on it: each image's
    variance over the seeds, over their number. That part is the seeds' noise, not the test
    set's, so it is taken out of `test` (floored at 0) and returned in `seeds`, where diff_se
    counts it once: averaged over 10,000 images it is a precise floor under the seed spread
    that 2 or 3 seeds' accuracies estimate only roughly (two seeds of the DATE runs agree
    to 0.02 points, yet disagree on 350 images). It is the part of the seed variance that
    is independent from image to image; it is a lower bound as long as a seed's hits are on
    average not negatively correlated across images (were they, the floor would overstate
    the seed noise: conservative). by_seed: the arms are paired seed by seed
    (verdict_better); the variance is then of the per-image differences. Hits are matched by
    position only: evaluations of different test files of the same length would pair
    unrelated images, which inflates it (the experiments evaluate one fixed test LMDB)."""
    runs = [*a, *b]
    if not a or not b or any(h is None for h in runs) or len({len(h) for h in runs}) != 1:
        return None
    if by_seed and len(a) != len(b):
        raise ValueError(f"paired by seed, but {len(a)} runs against {len(b)}")
    arms = [np.asarray(x, float) for x in (a, b)]  # seeds x images
    if by_seed:
        arms = [arms[1] - arms[0]]
        share = arms[0].mean(axis=0)
    else:
        share = arms[1].mean(axis=0) - arms[0].mean(axis=0)
    images = share.size
    # each image's variance over an arm's seeds, over their number: the seeds' part
    seeds = [float(x.var(axis=0, ddof=1).mean()) / len(x) if len(x) > 1 else 0.0 for x in arms]
    test = max(float(share.var(ddof=1)) - sum(seeds), 0.0)
    return PairedNoise(math.sqrt(test / images), tuple(math.sqrt(v / images) for v in seeds),
                       by_seed)


TEXT_BLOCK = 100
"""Sentences per block of the test text (PTB's has 3,761): the LSTM arms' difference in NLL
varies alike over neighbouring sentences (one article's), so single sentences are not
independent draws. Measured on the 3-seed claim-7 runs (2026-12-07; text_noise, each run's
blocks centred): the noise of the difference is 0.60% counted per sentence, 1.06% over blocks
of 10, 1.35% of 20, 1.71% of 50, 1.80% of 80, 2.15% of 100, and 2.2-2.4% for 120-500 (31 to 7
blocks). 100 is at the foot of that plateau, with 37 blocks left to measure it from."""


def text_blocks(sentence_nll, count: int, block: int = TEXT_BLOCK) -> np.ndarray:
    """A text's NLL summed over blocks of about `block` consecutive sentences (at least 2
    blocks), each sum x (number of blocks) / count (the text's targets): their mean is the mean
    NLL per target, so paired_noise of two models' blocks is the noise of their difference in
    mean NLL, the relative difference of their perplexities (hpcsgd.lm.score saves the
    per-sentence NLLs)."""
    sentences = np.asarray(sentence_nll, float)
    m = max(len(sentences) // block, 2)
    return np.array([x.sum() for x in np.array_split(sentences, m)]) * m / count


def text_noise(base: list, date: list, count: int, block: int = TEXT_BLOCK) -> PairedNoise | None:
    """paired_noise of two arms' mean NLL on one test text of `count` targets, from each
    run's per-sentence NLLs (seed order) in blocks of `block` sentences; None when a run has
    none saved."""
    runs = [*base, *date]
    if not base or not date or any(x is None for x in runs):
        return None

    def centred(sentences):
        # a seed's shift of every block (better or worse as a whole) is no part of the
        # difference's spread over blocks, yet it would sit in each block's seed variance
        # and be taken out of the text's noise: each run's blocks about their own mean
        blocks = text_blocks(sentences, count, block)
        return blocks - blocks.mean()
    return paired_noise([centred(x) for x in base], [centred(x) for x in date])


def diff_se(a: list[float], b: list[float], noise: PairedNoise | None = None) -> float:
    """Of mean(b) - mean(a): the test set's noise (paired_noise when known; else each side's
    binomial as if their test sets were independent) and each side's seed spread, never less
    than the seeds' per-image disagreement measured by paired_noise.

    A side of one seed has no spread of its own. Its per-image disagreement is in
    paired_noise's test part (nothing to subtract it from), but the part of the seed noise
    shared by every image (a seed better or worse as a whole) is not: it is borrowed from the
    other side when that has 2+ seeds (its spread less its per-image part), assuming the two
    arms' seeds vary alike. Without it a --bn-curve cell (one seed) against a 3-seed baseline
    got a band ~0.75x the true spread in simulation."""
    if noise is None:
        return math.hypot(standard_error(a), standard_error(b))
    if noise.by_seed:
        raise ValueError("diff_se takes the noise of independent arms (paired_noise without "
                         "by_seed)")
    floors = noise.seeds or (0.0, 0.0)
    sides = [(len(v), stats(v)[1] if len(v) > 1 else 0.0) for v in (a, b)]
    seeds = [sd / math.sqrt(n) for n, sd in sides]
    for one, other in ((0, 1), (1, 0)):
        (n1, _), (n2, sd2) = sides[one], sides[other]
        if n1 == 1 and n2 > 1:  # per run: the other side's spread less its per-image part
            seeds[one] = math.sqrt(max(sd2 ** 2 - n2 * floors[other] ** 2, 0.0))
    return math.hypot(noise.test, *map(max, seeds, floors))


def _paired(how: str, test: PairedNoise | None) -> str:
    """The evidence text, saying how the test set's noise was counted."""
    return how + ("; test noise paired over the test images" if test is not None and how else "")


def call(margin: float, se: float, yes: str, no: str) -> str:
    """yes / no by the side of the threshold the margin is on; inconclusive within 2 SE."""
    if abs(margin) <= 2 * se:
        return "inconclusive"
    return yes if margin > 0 else no


def evidence_level(margin: float, se: float, seeds: int, steps: int | None = None) -> str:
    """How strong the evidence for a call is, one of LEVELS: "weak" (within 2 standard
    errors of the threshold, or fewer than MIN_STEPS steps at the largest batch), "indicative"
    (beyond, but fewer than STRONG_SEEDS seeds) or "strong"."""
    if abs(margin) <= 2 * se or (steps is not None and steps < MIN_STEPS):
        return "weak"
    return "strong" if seeds >= STRONG_SEEDS else "indicative"


def strength(margin: float, se: float, seeds: int, steps: int | None = None,
             unit: str = " points") -> str:
    """evidence_level with its reasons: "strong" (3+ seeds, beyond 2 standard errors, >=
    MIN_STEPS steps at the largest batch), "indicative" (one or two seeds) or "weak" (within
    the noise, or too few steps at the largest batch). margin and se are fractions, printed
    x 100 with `unit` (percentage points of top-1, or "%" of a relative change)."""
    level = evidence_level(margin, se, seeds, steps)
    # enough decimals that a margin just beyond (or inside) its band does not print as equal
    d = next((d for d in (2, 3) if f"{abs(margin) * 100:.{d}f}" != f"{2 * se * 100:.{d}f}"), 4)
    m, se_, band = (f"{x * 100:.{d}f}" for x in (abs(margin), se, 2 * se))
    m, band = m + unit, band + unit
    within = abs(margin) <= 2 * se
    side = "within 2 standard errors" if within else "> 2 standard errors"
    notes = [f"{m} from the threshold, {side} (2 x {se_} = {band})"]
    if steps is not None and steps < MIN_STEPS:
        notes.append(f"only {steps} steps at the largest batch (< {MIN_STEPS})")
    if level == "weak":
        return "weak: " + "; ".join(notes if within else notes[1:])
    if seeds < 2:
        return f"indicative: {notes[0]}, but one seed (test-set noise only, seed spread unmeasured)"
    if level == "indicative":
        return (f"indicative: {notes[0]}, but {seeds} seeds (the spread of so few seeds is "
                "itself a rough estimate)")
    return f"strong: {notes[0]} over {seeds} seeds"


def _missing(word="not measured", reason="a run it needs is missing") -> Verdict:
    return Verdict(word, reason, "")


def verdict_goyal(base: list[float], goyal: dict[int, list[float]], tol: float = TOL,
                  steps: int | None = None, noise: dict | None = None) -> Verdict:
    """Claim: linear scaling + warmup holds up to some batch and breaks down beyond it.
    noise: batch -> paired_noise against the baseline (None: not known)."""
    goyal = {b: v for b, v in goyal.items() if v}
    if not base or not goyal:
        return _missing(reason="the baseline or every large-batch run is missing")
    noise = noise or {}
    m0 = stats(base)[0]
    margins = {b: stats(v)[0] - (m0 - tol) for b, v in goyal.items()}  # > 0: held
    ses = {b: diff_se(base, v, noise.get(b)) for b, v in goyal.items()}
    sides = {b: call(margins[b], ses[b], "held", "broke") for b in goyal}
    held = [b for b in sorted(goyal) if sides[b] == "held"]
    broke = [b for b in sorted(goyal) if sides[b] == "broke"]
    unclear = [b for b in sorted(goyal) if sides[b] == "inconclusive"]
    # the evidence is the weakest batch's (then the closest to the line): every batch's call
    # makes the shape, and a batch may have fewer seeds than another (--bn-curve)
    seeds = {b: min(len(base), len(goyal[b])) for b in goyal}
    decide = min(goyal, key=lambda b: (LEVELS.index(evidence_level(margins[b], ses[b], seeds[b],
                                                                   steps)),
                                       abs(margins[b]) / max(ses[b], 1e-12)))
    how = _paired(strength(margins[decide], ses[decide], seeds[decide], steps),
                  noise.get(decide)) + \
        (f"; the weakest batch's evidence: {decide}" if len(goyal) > 1 else "")
    detail = ", ".join(f"{b}: {(stats(goyal[b])[0] - m0) * 100:+.2f}" for b in sorted(goyal))
    if unclear:
        return Verdict("inconclusive", f"within the noise of the {tol * 100:g}-point line at batch "
                       f"{unclear} (points vs the baseline: {detail})", how)
    if broke and held and max(held) < min(broke):
        return Verdict("reproduced", f"held up to batch {max(held)}, broke down from "
                       f"{min(broke)} ({detail})", how)
    if broke and not held:
        return Verdict("partly reproduced", f"broke down at every batch tried (from "
                       f"{min(broke)}); no batch where it held was seen ({detail})", how)
    if broke:
        return Verdict("not reproduced", f"no single threshold ({detail})", how)
    return Verdict("not reproduced", f"held at every batch tried ({detail})", how)


def verdict_keeps(base: list[float], method: dict[int, list[float]], batches, tol: float = TOL,
                  steps: int | None = None, noise: dict | None = None) -> Verdict:
    """Claim: `method` stays within tol of the baseline at every batch in `batches`.
    noise: batch -> paired_noise against the baseline (None: not known)."""
    missing = [b for b in batches if not method.get(b)]
    if not base:
        return _missing(reason="no finished baseline run")
    if missing or not batches:
        return _missing(reason=f"no finished run at batch {missing}")
    m0 = stats(base)[0]
    worst = min(batches, key=lambda b: stats(method[b])[0])
    gap = stats(method[worst])[0] - m0
    test = (noise or {}).get(worst)
    se = diff_se(base, method[worst], test)
    word = call(gap + tol, se, "reproduced", "not reproduced")
    how = _paired(strength(gap + tol, se, min(len(base), len(method[worst])), steps), test)
    return Verdict(word, f"{gap * 100:+.2f} points at batch {worst} (the worst of {list(batches)}; "
                   f"tolerance {tol * 100:g} point)", how)


def verdict_better(a: list[float], b: list[float], noise: PairedNoise | None = None) -> Verdict:
    """Claim: b is more accurate than a, the runs paired by seed (same init and data order):
    the mean of the per-seed differences against its standard error. noise: paired_noise of
    the runs, by_seed (None: not known)."""
    n = min(len(a), len(b))
    if n == 0:
        return _missing()
    diffs = [y - x for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    # the test set's noise, and the seeds' on top (never less than their per-image part)
    se = diff_se(a[:1], b[:1]) if noise is None else noise.test
    if noise is not None and n > 1 and not noise.by_seed:
        raise ValueError("verdict_better takes the noise of arms paired by seed "
                         "(paired_noise(..., by_seed=True))")
    if n > 1:
        floor = noise.seeds[0] if noise and noise.seeds else 0.0
        se = math.hypot(se, max(statistics.stdev(diffs) / math.sqrt(n), floor))
    word = call(mean, se, "reproduced", "not reproduced")
    return Verdict(word, f"{mean * 100:+.2f} points (paired over {n} seed(s))",
                   _paired(strength(mean, se, n), noise))


def verdict_ensemble(members: list[list[float]], ensembles: list[float],
                     noise: PairedNoise | None = None) -> Verdict:
    """Claim: the ensemble beats every one of its members (the collapsed branches). Seed by
    seed (members[i]: seed i's branches, ensembles[i]: their ensemble): each ensemble against
    its own seed's best branch, the differences paired as verdict_better pairs them. noise:
    paired_noise of the best branches' and the ensembles' hits, by_seed (None: not known)."""
    pairs = [(max(m), e) for m, e in zip(members, ensembles) if m and not math.isnan(e)]
    if not pairs:
        return _missing(reason="no ensemble evaluation")
    best, ens = (list(x) for x in zip(*pairs))
    v = verdict_better(best, ens, noise)
    b, e = statistics.fmean(best), statistics.fmean(ens)
    if len(pairs) == 1:
        return replace(v, reason=f"ensemble {e:.2%} vs best member {b:.2%} ({(e - b) * 100:+.2f} "
                                 "points)")
    return replace(v, reason=f"mean ensemble {e:.2%} vs mean best branch {b:.2%} "
                             f"({(e - b) * 100:+.2f} points, paired over {len(pairs)} seeds)")


def verdict_lm(base: list[float], date: list[float], tol: float = LM_TOL,
               noise: PairedNoise | None = None) -> Verdict:
    """Claim: DATE at 32 x B0 loses no perplexity (within tol, relative) without tuning.
    Judged on the seeds' mean perplexities (the caller passes the seeds both arms finished).
    The standard error of their ratio (relative) combines the test text's sampling noise
    (noise: paired_noise of the arms' text_blocks, in nats, which are relative changes of
    perplexity; None: not known) and, with 2+ seeds of each, each arm's seed spread, never
    less than its seeds' block-by-block disagreement (noise.seeds). Inconclusive within 2 of
    it from the tol line. With one seed and no noise there is no band."""
    if not base or not date:
        return _missing()
    if not all(map(math.isfinite, base)):
        return _missing(reason="the baseline's perplexity is not finite (diverged)")
    bad = sum(not math.isfinite(x) for x in date)
    if bad:
        return Verdict("not reproduced", f"DATE's perplexity is not finite in {bad} of "
                       f"{len(date)} seeds (diverged)", "")
    if noise is not None and noise.by_seed:
        raise ValueError("verdict_lm takes the noise of independent arms (paired_noise "
                         "without by_seed)")
    (b, sb, nb), (d, sd, nd) = stats(base), stats(date)
    rel = d / b - 1.0
    reason = f"perplexity {d:.1f} vs baseline {b:.1f} ({rel:+.1%}; tolerance {tol:.0%})"
    seeds = min(nb, nd)
    if seeds < 2 and noise is None:
        return Verdict("reproduced" if rel <= tol else "not reproduced", reason,
                       "indicative: one seed of an arm; the seed spread of perplexity is not "
                       "measured")
    floors = noise.seeds if noise is not None and noise.seeds else (0.0, 0.0)
    spreads = [s / math.sqrt(n) / m if n > 1 else 0.0 for m, s, n in ((b, sb, nb), (d, sd, nd))]
    # the standard error of the ratio d / b (delta method; ln of a perplexity is its NLL)
    se = (1 + rel) * math.hypot(noise.test if noise is not None else 0.0,
                                *map(max, spreads, floors))
    how = strength(tol - rel, se, seeds, unit="%")
    if noise is not None:
        how += "; the test text's noise counted over blocks of consecutive sentences"
    return Verdict(call(tol - rel, se, "reproduced", "not reproduced"), reason, how)
