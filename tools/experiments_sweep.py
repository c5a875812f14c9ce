"""The LARS gamma sweep's rules, shared by the planner (tools/experiments.py) and the report.

You et al. tuned LARS's global LR gamma per batch size; the full set tries the rule's gamma
x 0.5 / 1 / 2 and, while the best lies at an edge of the gammas tried, extends the grid by
halving or doubling it, so that "LARS loses accuracy at batch B" is not an artefact of where
the grid stops. Pure functions of (gammas, top-1s) in the order the runs were planned.
"""
from __future__ import annotations

SWEEP_EXTENSIONS = 2
"""How many times a sweep whose best gamma is the lowest or highest tried is extended."""


def run_gamma(run) -> float:
    """The gamma a LARS run was given (its --optim.base_lr override)."""
    return float(next(o for o in run.overrides if o.startswith("--optim.base_lr=")).split("=")[1])


def best_gamma(gammas: list[float], tops: list[float]) -> float:
    """The gamma of the most accurate run; a tie goes to the earlier run, as planned."""
    return gammas[max(range(len(gammas)), key=lambda i: tops[i])]


def edge_extension(gammas: list[float], tops: list[float]) -> float | None:
    """The next gamma to try when the best is the lowest (its half) or the highest (its double)
    of two or more gammas tried; None when the best has a worse gamma on each side."""
    if len(gammas) < 2:
        return None
    best = best_gamma(gammas, tops)
    if best == min(gammas):
        return best / 2
    if best == max(gammas):
        return best * 2
    return None
