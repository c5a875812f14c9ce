"""Predicted versus published: the comparisons docs/scaling.md is made of, as plain rows.

Each function returns a list of dicts (one per published row) with the prediction, the
signed relative error and the row's role: "calibration" (it set a parameter),
"validation" (it did not), "calibration run" (a time-to-train row from the same run as a
calibration row, so not independent) or "excluded" (no time, or self-contradictory).
"""
from __future__ import annotations

import dataclasses
import itertools
import statistics

from hpcsgd.scaling.calibration import STAMPEDE2_CALIBRATION, calibrate_stampede2
from hpcsgd.scaling.model import epoch_seconds, iteration, time_to_train
from hpcsgd.scaling.paper import TABLE_V, EpochRow, TrainRow


def epoch_rows(cluster, rows: tuple[EpochRow, ...], calibration: set) -> list[dict]:
    out = []
    for r in rows:
        pred = epoch_seconds(cluster, r.local_batch, r.nodes)
        out.append({
            "table": r.table, "local_batch": r.local_batch, "nodes": r.nodes, "cpus": r.cpus,
            "published_s": r.seconds, "predicted_s": pred, "error": pred / r.seconds - 1,
            "published_throughput": r.throughput,
            "predicted_throughput": r.local_batch * r.nodes / iteration(
                cluster, r.local_batch, r.nodes).total,
            "role": "calibration" if (r.local_batch, r.nodes) in calibration else "validation",
            "breakdown": iteration(cluster, r.local_batch, r.nodes).as_dict()})
    return out


def train_rows(clusters: dict, rows: tuple[TrainRow, ...], calibration: dict) -> list[dict]:
    """Published time to train versus iterations (or epochs) x predicted time per iteration
    plus one final evaluation (Table V's per-epoch averages already hold the paper's own)."""
    out = []
    for r in rows:
        cluster = clusters[r.system]
        key = (r.local_batch, r.nodes)
        steps = {"iterations": r.iterations} if r.iterations else {"epochs": r.epochs}
        pred = time_to_train(cluster, nodes=r.nodes, ranks_per_node=1,
                             local_batch=r.local_batch, evaluations=1, **steps)["total_s"] / 60
        if r.minutes is None or "inconsistent" in r.note:
            role = "excluded"
        elif key in calibration[r.system]:
            role = "calibration run"
        else:
            role = "validation"
        out.append({"table": r.table, "system": r.system, "global_batch": r.global_batch,
                    "nodes": r.nodes, "cpus": r.cpus, "local_batch": r.local_batch,
                    "epochs": r.epochs, "iterations": r.iterations, "published_min": r.minutes,
                    "predicted_min": pred, "role": role, "note": r.note,
                    "error": None if r.minutes is None else pred / r.minutes - 1})
    return out


def summary(rows: list[dict], roles=("validation",)) -> dict:
    errs = [abs(r["error"]) for r in rows if r["role"] in roles and r["error"] is not None]
    if not errs:
        return {"n": 0, "median": float("nan"), "max": float("nan")}
    return {"n": len(errs), "median": statistics.median(errs), "max": max(errs)}


def calibration_choices(rows=TABLE_V) -> dict:
    """Every 3-row calibration of Table V that identifies r, B0 and s: how the validation
    errors depend on which rows were chosen (ours included)."""
    results = []
    for combo in itertools.combinations(rows, 3):
        use = tuple((r.local_batch, r.nodes) for r in combo)
        if len({b for b, _ in use}) < 2 or all(n <= 256 for _, n in use):
            continue  # r and B0 need two batches, the slope a row past the knee
        try:
            cluster = calibrate_stampede2(rows, use)
        except ValueError:  # a non-positive compute rate, or a rank-deficient design: the
            # knee doublings constant over the rows or an affine function of the local batch
            continue
        preds = [abs(epoch_seconds(cluster, r.local_batch, r.nodes) / r.seconds - 1)
                 for r in rows if (r.local_batch, r.nodes) not in use]
        everything = [abs(epoch_seconds(cluster, r.local_batch, r.nodes) / r.seconds - 1)
                      for r in rows]
        results.append({"use": use, "val_median": statistics.median(preds),
                        "val_max": max(preds), "all_median": statistics.median(everything),
                        "all_max": max(everything)})
    meets = [r for r in results if r["all_median"] <= 0.05 and r["all_max"] <= 0.10]
    with_256 = [r for r in results if {(16, 256), (32, 256)} <= set(r["use"])]
    return {"n": len(results), "meets_target": len(meets), "results": results,
            "val_median_quartiles": statistics.quantiles([r["val_median"] for r in results]),
            "with_both_256_rows": with_256}


def sensitivity(cluster, rows=TABLE_V) -> dict:
    """Largest change of a Table V prediction when the spec-sheet network is 10x worse in
    latency or 2x worse in bandwidth (with the calibration held fixed)."""
    out = {}
    for label, alpha_x, beta_x in (("alpha x10", 10, 1), ("beta x2", 1, 2)):
        inter = dataclasses.replace(cluster.network.inter, alpha=cluster.network.inter.alpha *
                                    alpha_x, beta=cluster.network.inter.beta * beta_x)
        worse = dataclasses.replace(cluster, network=dataclasses.replace(cluster.network,
                                                                         inter=inter))
        out[label] = max(abs(epoch_seconds(worse, r.local_batch, r.nodes) /
                             epoch_seconds(cluster, r.local_batch, r.nodes) - 1) for r in rows)
    return out


def efficiency_curve(cluster, local_batch: int, nodes_list) -> list[float]:
    """Weak-scaling efficiency t_iter(1 node) / t_iter(P), as in the paper's Figs. 1-2."""
    one = iteration(cluster, local_batch, 1).total
    return [one / iteration(cluster, local_batch, n).total for n in nodes_list]


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x: float | None) -> str:
    """A signed percentage to 0.1; an error that rounds to zero prints "+0.0%" whatever the
    sign of its last bit (which differs between CPUs' floating-point paths)."""
    if x is None:
        return "-"
    return f"{round(100 * x, 1) + 0.0:+.1f}%"  # + 0.0 turns -0.0 into 0.0


DEFAULT_CALIBRATION = {"stampede2": set(STAMPEDE2_CALIBRATION), "marenostrum4": {(32, 256)}}
