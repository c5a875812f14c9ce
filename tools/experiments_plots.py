"""The plots of docs/results.md (matplotlib, PNG), from the run folders of tools/experiments.py.

    .venv/bin/python tools/experiments.py --report-only [--quick]   # writes docs/results_*.png
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from experiments_verdicts import TOL, stats

# ---------------------------------------------------------------------------- reading

def eval_curve(out_dir: Path, name: str, key: str = "top1") -> tuple[list, list]:
    path = out_dir / name / "metrics.jsonl"
    if not path.is_file():
        return [], []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["tag"] == "eval"]
    return [r["epoch"] for r in rows], [r[key] for r in rows]


def diverged(out_dir: Path, name: str) -> bool:
    """Did the training loss become NaN or infinite (the run diverged)? A NaN loss is logged
    as NaN (train.nonfinite = "ignore"), or as a "nonfinite" record (stop or skip)."""
    path = out_dir / name / "metrics.jsonl"
    if not path.is_file():
        return False
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return any(r["tag"] == "nonfinite" or (r["tag"] == "train" and r["loss"] is not None
                                           and not math.isfinite(r["loss"])) for r in rows)


def schedule_curve(config_toml: Path, points: int = 600) -> tuple[list, list]:
    """The run's LR against the epoch, from its saved config (the schedule is a pure
    function of the epoch; the logged LRs are too sparse to show short cycles)."""
    from hpcsgd.config import load_config
    from hpcsgd.schedules import build_schedule
    if not config_toml.is_file():
        return [], []
    cfg = load_config(config_toml)
    schedule = build_schedule(cfg)
    xs = [cfg.train.epochs * i / points for i in range(points + 1)]
    return xs, [schedule.at(x).lr for x in xs]


# ---------------------------------------------------------------------------- plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


LABELS = {"baseline": "baseline SGD (B0)", "goyal": "linear scaling + warmup (Goyal)",
          "lars": "LARS + warmup + poly 2 (You)", "date": "DATE (no retuning)"}


def plot_scaling(cells, batches, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    base = cells.get(("baseline", batches[0]), [])
    if base:
        m, s, _ = stats(base)
        ax.axhspan((m - TOL) * 100, (m + TOL) * 100, color="0.85", label="baseline ± 1 point")
    for method in ("goyal", "lars", "date"):
        xs = [b for b in batches if cells.get((method, b)) or (b == batches[0] and base)]
        pts = [cells.get((method, b)) or base for b in xs]
        if not xs:
            continue
        means = [stats(p)[0] * 100 for p in pts]
        stds = [stats(p)[1] * 100 for p in pts]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=LABELS[method])
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("global batch (images per step; 60,000 training images)")
    ax.set_ylabel("final test top-1 [%]")
    ax.set_title("Fashion-MNIST, LeNet, same epochs at every batch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(out_dir: Path, named: dict[str, str], path: Path, *, key: str, ylabel: str,
                title: str, log: bool = False) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, name in named.items():
        xs, ys = eval_curve(out_dir, name, key)
        if xs:
            ax.plot(xs, [y * 100 if key == "top1" else y for y in ys], marker=".", label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_collapse(groups: dict[str, list[float]], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    names = [n for n in groups if groups[n]]
    means = [stats(groups[n])[0] * 100 for n in names]
    stds = [stats(groups[n])[1] * 100 for n in names]
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=["0.6", "C0", "C2"][:len(names)])
    for i, n in enumerate(names):
        ax.plot([i] * len(groups[n]), [v * 100 for v in groups[n]], "k.", ms=4)
    ax.set_xticks(range(len(names)), names)
    if means:
        lo = min(min(v for v in groups[n]) for n in names) * 100
        ax.set_ylim(lo - 1.0, max(means) + max(stds + [0]) + 0.5)
    ax.set_ylabel("final test top-1 [%]")
    ax.set_title("Codreanu Table VIII: weight decay and the final collapse")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cyclic(out_dir: Path, name: str, result: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs, lrs = schedule_curve(out_dir / name / "config.toml")
    ax.plot(xs, lrs, color="0.5", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax2 = ax.twinx()
    snaps = result["ensemble"]["snapshots"]
    epochs = [snapshot_epoch(out_dir, name, s["path"]) for s in snaps]
    ax2.plot(epochs, [s["top1"] * 100 for s in snaps], "o", color="C0", label="snapshot top-1")
    ax2.axhline(result["ensemble"]["ensemble"]["top1"] * 100, color="C3", ls="--",
                label=f"ensemble of {len(snaps)}")
    ax2.set_ylabel("test top-1 [%]")
    ax2.legend(fontsize=8, loc="lower right")
    ax.set_title("Codreanu Table XI: cyclic schedule snapshots and their ensemble")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def snapshot_epoch(out_dir: Path, name: str, snap_path: str) -> float:
    path = out_dir / name / "metrics.jsonl"
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["tag"] == "snapshot" and Path(r["path"]).name == Path(snap_path).name:
            return r["epoch"]
    return math.nan
