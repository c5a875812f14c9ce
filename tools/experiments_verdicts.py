"""The report's verdict rules: pure functions from measured numbers to a verdict and the reason.

A verdict is one of "reproduced", "partly reproduced", "inconclusive", "not reproduced" or
"not measured"; every rule says which numbers and which tolerance decide it, so the report can
state, claim by claim, why a claim did or did not reproduce (tools/experiments_report.py).
"""
from __future__ import annotations

import math
import statistics

TOL = 0.01        # "keeps the baseline's accuracy": within 1 percentage point of top-1
LM_TOL = 0.05     # "without losing perplexity": within 5% of the baseline's perplexity


def stats(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (0 for one value), count)."""
    if not values:
        return math.nan, math.nan, 0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def fmt(values: list[float], pct: bool = True) -> str:
    mean, std, n = stats(values)
    if n == 0:
        return "—"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    spread = f" ± {std * scale:.2f}" if n > 1 else ""
    return f"{mean * scale:.2f}{unit}{spread} (n={n})"


def verdict_goyal(base: float, goyal: dict[int, float], tol: float = TOL) -> tuple[str, str]:
    """Claim: linear scaling + warmup holds up to some batch and breaks down beyond it."""
    goyal = {b: v for b, v in goyal.items() if not math.isnan(v)}
    if math.isnan(base) or not goyal:
        return "not measured", "the baseline or every large-batch run is missing"
    held = [b for b, v in sorted(goyal.items()) if v >= base - tol]
    broke = [b for b, v in sorted(goyal.items()) if v < base - tol]
    if broke and held and max(held) < min(broke):
        return "reproduced", f"held up to batch {max(held)}, broke down from {min(broke)}"
    if broke and not held:
        return "partly reproduced", (f"broke down at every batch above the baseline's "
                                     f"(from {min(broke)}); no batch where it held was seen")
    if broke:
        return "not reproduced", "no single threshold: it broke at some batches and held at larger ones"
    return "not reproduced", "held at every batch tested"


def verdict_keeps(base: float, method: dict[int, float], batches, tol: float = TOL,
                  what: str = "") -> tuple[str, str]:
    """Claim: `method` stays within tol of the baseline at every batch in `batches`."""
    missing = [b for b in batches if b not in method or math.isnan(method[b])]
    if math.isnan(base):
        return "not measured", "no finished baseline run"
    if missing:
        return "not measured", f"no finished run at batch {missing}"
    worst = min(batches, key=lambda b: method[b] - base)
    gap = (method[worst] - base) * 100
    if all(method[b] >= base - tol for b in batches):
        return "reproduced", f"within {tol * 100:g} point(s) at every batch{what} (worst {gap:+.2f} at {worst})"
    return "not reproduced", f"{gap:+.2f} points at batch {worst}, beyond the {tol * 100:g}-point tolerance"


def verdict_better(a: list[float], b: list[float]) -> tuple[str, str]:
    """Claim: b is more accurate than a. Reproduced when the mean gain exceeds one standard
    error of the difference; with one seed each only the direction can be seen."""
    (ma, sa, na), (mb, sb, nb) = stats(a), stats(b)
    if na == 0 or nb == 0:
        return "not measured", "a run is missing"
    diff = (mb - ma) * 100
    if na < 2 or nb < 2:
        word = "same direction" if diff > 0 else "not reproduced"
        return f"{word} (one seed, no spread)", f"{diff:+.2f} points"
    se = math.sqrt(sa ** 2 / na + sb ** 2 / nb) * 100
    if diff > se:
        return "reproduced", f"{diff:+.2f} points (standard error {se:.2f})"
    if diff > 0:
        return "inconclusive", f"{diff:+.2f} points, within the seed spread (standard error {se:.2f})"
    return "not reproduced", f"{diff:+.2f} points (standard error {se:.2f})"


def verdict_ensemble(snapshots: list[float], ensemble: float) -> tuple[str, str]:
    """Claim: the ensemble of the snapshots beats every single snapshot."""
    if not snapshots:
        return "not measured", "no snapshots"
    best = max(snapshots)
    gap = (ensemble - best) * 100
    return ("reproduced" if gap > 0 else "not reproduced"), \
        f"ensemble {ensemble:.2%} vs best snapshot {best:.2%} ({gap:+.2f} points)"


def verdict_lm(base: float, date: float, tol: float = LM_TOL) -> tuple[str, str]:
    """Claim: DATE at 32 x B0 loses no perplexity (within tol, relative) without tuning."""
    if math.isnan(base) or math.isnan(date):
        return "not measured", "a run is missing"
    rel = date / base - 1.0
    word = "reproduced" if rel <= tol else "not reproduced"
    return word, f"perplexity {date:.1f} vs baseline {base:.1f} ({rel:+.1%})"
