"""The plots of docs/results.md (matplotlib, PNG), from the run folders of tools/experiments.

    .venv/bin/python -m tools.experiments --report-only [--quick]   # writes docs/results_*.png

Each function reads what it needs from the run folders and draws whatever has finished.
"""
from __future__ import annotations

import math
from pathlib import Path

from hpcsgd.run.metrics import current_records, read_metrics

from .verdicts import TOL, stats

LABELS = {"baseline": "baseline SGD (B0)", "goyal": "linear scaling + warmup (Goyal)",
          "lars": "LARS + warmup + poly 2 (You)", "date": "DATE (eta0 tuned at B0 only)"}


# ---------------------------------------------------------------------------- reading

def records(out_dir: Path, name: str, tag: str) -> list[dict]:
    """The run's `tag` records as it went on (a resume's repeated steps: the later copy)."""
    path = out_dir / name / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in current_records(read_metrics(path)) if r.get("tag") == tag]


def eval_curve(out_dir: Path, name: str, key: str = "top1") -> tuple[list, list]:
    rows = records(out_dir, name, "eval")
    return [r["epoch"] for r in rows], [r[key] for r in rows]


def ratio_curve(out_dir: Path, name: str) -> list[tuple[float, dict]]:
    """(epoch, date_ratio) of each train record that carries DATE's layer-ratio summary."""
    return [(r["epoch"], r["date_ratio"]) for r in records(out_dir, name, "train")
            if isinstance(r.get("date_ratio"), dict)]


def diverged(out_dir: Path, name: str) -> bool:
    """Did the training loss become NaN or infinite? A NaN loss is logged as NaN
    (train.nonfinite = "ignore"), or as a "nonfinite" record (stop or skip)."""
    if records(out_dir, name, "nonfinite"):
        return True
    return any(r["loss"] is not None and not math.isfinite(r["loss"])
               for r in records(out_dir, name, "train"))


def schedule_curve(config_toml: Path, points: int = 600) -> tuple[list, list]:
    """The run's LR against the epoch, from its saved config (the schedule is a pure
    function of the epoch; the logged LRs are too sparse to show short cycles)."""
    from hpcsgd.config import load_config
    from hpcsgd.schedule.plan import build_schedule
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


def _style(i: int) -> dict:
    """The i-th curve's colour and line style: past the 10-colour cycle the styles change, so
    no two of up to 40 curves are drawn alike."""
    return {"color": f"C{i % 10}", "ls": ("-", "--", ":", "-.")[i // 10 % 4]}


def _legend_beside(ax, fontsize: int = 8) -> None:
    """The legend to the right of the axes: with many runs it would cover their curves."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _save(fig, plt, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a legend beside the axes included
    plt.close(fig)


def plot_scaling(cells, batches, path: Path, *, title: str, methods=("goyal", "lars"),
                 stress=()) -> None:
    """Test top-1 against the batch, one line per method; the baseline's +-1 point band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    base = cells.get(("baseline", batches[0]), [])
    if base:
        m = stats(base)[0]
        ax.axhspan((m - TOL) * 100, (m + TOL) * 100, color="0.85", label="baseline ± 1 point")
    for method in methods:
        xs = [b for b in list(batches) + list(stress) if cells.get((method, b))]
        if xs:
            pts = [cells[(method, b)] for b in xs]
            ax.errorbar(xs, [stats(p)[0] * 100 for p in pts], yerr=[stats(p)[1] * 100 for p in pts],
                        marker="o", capsize=3, label=LABELS[method])
    if stress:
        ax.axvspan(max(batches) * 1.4, max(stress) * 1.4, color="0.95", label="beyond the papers")
    ticks = list(batches) + list(stress)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(b) for b in ticks])
    ax.set_xlabel("global batch (50,000 training images)")
    ax.set_ylabel("final test top-1 [%]")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    _save(fig, plt, path)


def plot_curves(out_dir: Path, named: dict[str, str], path: Path, *, key: str, ylabel: str,
                title: str, log: bool = False) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    for i, (label, name) in enumerate(named.items()):
        xs, ys = eval_curve(out_dir, name, key)
        if xs:
            ax.plot(xs, [y * 100 if key == "top1" else y for y in ys], marker=".", label=label,
                    **_style(i))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_beside(ax)
    _save(fig, plt, path)


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
        lo = min(min(groups[n]) for n in names) * 100
        ax.set_ylim(lo - 1.0, max(means) + max(stds + [0]) + 0.5)
    ax.set_ylabel("final test top-1 [%]")
    ax.set_title("Codreanu Table VIII: weight decay and the final collapse")
    _save(fig, plt, path)


def plot_cyclic(out_dir: Path, name: str, ens: dict, path: Path) -> None:
    """The cyclic run's LR, its (uncollapsed) snapshots, the collapse branches that start
    from them, and the ensemble of the branches (collapsed_ensemble.json)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs, lrs = schedule_curve(out_dir / name / "config.toml")
    ax.plot(xs, lrs, color="0.5", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax2 = ax.twinx()
    snaps, branches = ens.get("snapshots", []), ens.get("branches", [])
    ax2.plot([s["epoch"] for s in snaps], [s["top1"] * 100 for s in snaps], "o", color="C0",
             label="snapshot (uncollapsed)")
    ax2.plot([b["from_epoch"] for b in branches], [b["top1"] * 100 for b in branches], "s",
             color="C2", label="its collapse branch")
    if "ensemble" in ens:
        ax2.axhline(ens["ensemble"]["top1"] * 100, color="C3", ls="--",
                    label=f"ensemble of {len(ens['ensemble'].get('members', branches))} branches")
    ax2.set_ylabel("test top-1 [%]")
    ax2.legend(fontsize=8, loc="lower right")
    ax.set_title("Codreanu Table XI: cyclic snapshots, collapse branches, their ensemble")
    _save(fig, plt, path)


def plot_date_ratio(out_dir: Path, named: dict[str, str], path: Path,
                    bounds: tuple[float, float] = (0.1, 10.0)) -> None:
    """DATE's layer ratio ||w||/||g|| over training (a ratio beyond the bounds is applied as
    the bound): the p10-p90 band and median over layer tensors as applied, the raw median and
    p90 where the run logged them, and the share of tensors at each bound."""
    curves = {label: ratio_curve(out_dir, name) for label, name in named.items()}
    curves = {k: v for k, v in curves.items() if v}
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10.0, 6.5), sharex=False)
    for i, (label, rows) in enumerate(curves.items()):
        ep = [e / rows[-1][0] for e, _ in rows]  # runs of different lengths side by side
        color = f"C{i}"
        top.fill_between(ep, [r["p10"] for _, r in rows], [r["p90"] for _, r in rows],
                         color=color, alpha=0.2)
        top.plot(ep, [r["p50"] for _, r in rows], color=color, label=f"{label}: median, p10-p90")
        if all("raw_p50" in r for _, r in rows):  # logged since 2026-12-07
            top.plot(ep, [r["raw_p50"] for _, r in rows], color=color, ls="--",
                     label=f"{label}: raw median, raw p90 (before the bounds)")
            top.plot(ep, [r["raw_p90"] for _, r in rows], color=color, ls=":")
        bottom.plot(ep, [r["at_upper"] * 100 for _, r in rows], color=color, label=f"{label}: at upper")
        bottom.plot(ep, [r["at_lower"] * 100 for _, r in rows], color=color, ls="--",
                    label=f"{label}: at lower")
    for bound in bounds:
        top.axhline(bound, color="0.5", ls=":", lw=1)
    top.set_yscale("log")
    top.set_ylabel("layer ratio ||w|| / ||g||")
    top.set_title(f"DATE's per-layer ratio during training (bounds {bounds[0]:g}, {bounds[1]:g})")
    bottom.set_xlabel("fraction of the run")
    bottom.set_ylabel("layer tensors at a bound [%]")
    for ax in (top, bottom):
        _legend_beside(ax, fontsize=7)
    _save(fig, plt, path)
