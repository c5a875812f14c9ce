"""The sweeps' rules, shared by the planner (tools/experiments/plan.py) and the report.

You et al. tune LARS's global LR gamma per batch; DATE tunes its eta0 once at its baseline
batch. A sweep tries a few multiples of a rule's value and picks the best by *validation*
top-1 (the val split held out of the training set; test gives final numbers only). While the
best is the lowest or highest value tried, the grid is extended by halving or doubling it, so
that "LARS loses accuracy at batch B" is not an artefact of where the grid stops. Pure
functions of (values, validation top-1s) in the order the runs were planned.
"""
from __future__ import annotations

SWEEP_EXTENSIONS = 2
"""How many times a sweep whose best value is the lowest or highest tried is extended."""


def best_value(values: list[float], tops: list[float]) -> float:
    """The value of the most accurate run; a tie goes to the earlier run, as planned."""
    return values[max(range(len(values)), key=lambda i: tops[i])]


def edge_extension(values: list[float], tops: list[float]) -> float | None:
    """The next value to try when the best is the lowest (its half) or the highest (its
    double) of two or more values tried; None when the best has a worse value on each side."""
    if len(values) < 2:
        return None
    best = best_value(values, tops)
    if best == min(values):
        return best / 2
    if best == max(values):
        return best * 2
    return None


def sweep(make, values, results: dict) -> tuple[list, float | None]:
    """The runs of a sweep over `values` (make(value) -> a run whose .value is that value) and
    its best value by validation top-1 (results[name]["top1"]), None until every planned run
    has finished. An extension is planned only once the runs before it have finished."""
    values = list(values)
    runs = [make(v) for v in values]
    if len(values) == 1:
        return runs, values[0]  # nothing to choose
    for extensions in range(SWEEP_EXTENSIONS + 1):
        if any(r.name not in results for r in runs):
            return runs, None
        tops = [results[r.name]["top1"] for r in runs]
        step = edge_extension(values, tops)
        if step is None or extensions == SWEEP_EXTENSIONS:
            return runs, best_value(values, tops)
        values.append(step)
        runs.append(make(step))


def sweep_edges(runs, results: dict) -> list[tuple[str, float]]:
    """(tune key, best value) of each finished sweep (every planned run done) whose best is
    still the lowest or highest value it tried, after its extensions."""
    by_key: dict[str, list] = {}
    for r in runs:
        if r.tune:
            by_key.setdefault(r.tune, []).append(r)
    edges = []
    for key, planned in by_key.items():
        if any(r.name not in results for r in planned):
            continue  # an extension may still run
        values, tops = [r.value for r in planned], [results[r.name]["top1"] for r in planned]
        if edge_extension(values, tops) is not None:
            edges.append((key, best_value(values, tops)))
    return edges


def best_run(planned, results: dict):
    """The run of a finished sweep with the best validation top-1 (a tie: the earlier run, as
    best_value decides); None while any of its runs is unfinished."""
    if not planned or any(r.name not in results for r in planned):
        return None
    best = best_value([r.value for r in planned], [results[r.name]["top1"] for r in planned])
    return next(r for r in planned if r.value == best)
