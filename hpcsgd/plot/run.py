"""hpcsgd plot run runs/<name> [--out PATH.png] [--x step|epoch]
hpcsgd plot run runs/<a> runs/<b> ... [--out PATH.png] [--x step|epoch]

A training run's curves as one PNG, from its runs/<name>/metrics.jsonl: training loss (and a
smoothed line), eval top-1/top-5, learning rate (weight decay on a twin axis when logged),
throughput, and per run the stacked fractions of each logged step's time spent in each phase
(every `*_s` field of a "train" record: data_s, compute_s or forward_s + backward_s, comm_s,
update_s, ...; rates such as img_per_s are not phases). Several run folders are overlaid, the
legend naming each run. Prints the path written (default: <run>/curves.png; for several runs
curves_<a>+<b>.png in their common folder). Exit 2 when a folder has no metrics.jsonl or no "train"
records.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hpcsgd.exits import EXIT_REFUSED
from hpcsgd.run.metrics import current_records, read_metrics  # noqa: E402



class RunError(Exception):
    """A run folder that cannot be plotted; the message names the path."""


# ---------------------------------------------------------------------------- pure functions

def is_phase(key: str) -> bool:
    """A phase time in seconds (data_s, comm_s, ...), not a rate (img_per_s, tok_per_s)."""
    return key.endswith("_s") and not key.endswith("_per_s")


def phase_fractions(records: list[dict]) -> dict[str, list[float]]:
    """{phase: [fraction of each record's phase time]}, phases in order of first appearance.
    A phase missing from a record (e.g. compute_s before forward_s/backward_s) counts 0; a
    record with no phase time at all gets 0 everywhere (nothing to divide)."""
    phases = list(dict.fromkeys(k for r in records for k in r if is_phase(k)))
    fractions: dict[str, list[float]] = {p: [] for p in phases}
    for r in records:
        total = sum(r.get(p, 0.0) for p in phases)
        for p in phases:
            fractions[p].append(r.get(p, 0.0) / total if total > 0 else 0.0)
    return fractions


def smooth(values: list[float], window: int | None = None) -> list[float]:
    """Centred moving average (no lag, unlike an exponential one), over ``window`` points
    (default ~1/10 of the curve), shrinking at the ends; non-finite values (a diverged loss)
    are left out of the averages rather than poisoning them."""
    half = (window or max(1, len(values) // 10)) // 2
    out = []
    for i in range(len(values)):
        near = [v for v in values[max(0, i - half):i + half + 1] if math.isfinite(v)]
        out.append(sum(near) / len(near) if near else math.nan)
    return out


def last_per_step(records: list[dict]) -> list[dict]:
    """One record per step, the last written, in step order: a run resumed from an older
    checkpoint appends the steps after it again, and the later lines are the ones that count."""
    return sorted({r["step"]: r for r in records}.values(), key=lambda r: r["step"])


# ---------------------------------------------------------------------------- reading

def load_run(folder: Path) -> dict:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        raise RunError(f"{path}: no such file (is {folder} a run folder?)")
    try:
        records = current_records(read_metrics(path))
        train = last_per_step([r for r in records if r["tag"] == "train"])
        evals = last_per_step([r for r in records if r["tag"] == "eval"])
    except (ValueError, KeyError) as e:  # a line that is not a tagged JSON object
        raise RunError(f"{path}: not a metrics log ({type(e).__name__}: {e})") from e
    if not train:
        raise RunError(f"{path}: no 'train' records to plot")
    return {"name": folder.name, "train": train, "eval": evals}


# ---------------------------------------------------------------------------- plot

def figure(runs: list[dict], x: str = "step"):
    """The figure of ``runs`` (load_run's dicts) against ``x`` ("step" or "epoch")."""
    rows = 2 + math.ceil(len(runs) / 2)  # four shared panels, then one phase panel per run
    fig = plt.figure(figsize=(11, 3.3 * rows))
    grid = fig.add_gridspec(rows, 2)
    ax_loss, ax_acc = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_lr, ax_rate = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    # the phase panels two by two; an odd last one spans the row (no empty panel)
    phase_axes = [fig.add_subplot(grid[2 + i // 2, :] if i == len(runs) - 1 and i % 2 == 0
                                  else grid[2 + i // 2, i % 2]) for i in range(len(runs))]
    ax_wd = None
    xlabel = "epoch" if x == "epoch" else "step"
    fractions = [phase_fractions(run["train"]) for run in runs]
    # one colour per phase name, the same in every run's panel
    phases = dict.fromkeys(p for f in fractions for p in f)
    colors = {p: f"C{k % 10}" for k, p in enumerate(phases)}
    for i, run in enumerate(runs):
        color, label, train, evals = f"C{i}", run["name"], run["train"], run["eval"]
        xs = [r[x] for r in train]
        marker = "o" if len(xs) == 1 else None  # a one-step run is a point, not an empty line
        # None: no finite loss in that interval (skipped non-finite steps)
        loss = [math.nan if r["loss"] is None else r["loss"] for r in train]
        ax_loss.plot(xs, loss, color=color, alpha=0.35, lw=1)
        ax_loss.plot(xs, smooth(loss), color=color, marker=marker,
                     label=f"{label} (smoothed)")
        ev = [r for r in evals if "top1" in r]
        if ev:
            ax_acc.plot([r[x] for r in ev], [r["top1"] * 100 for r in ev], "o-", color=color,
                        ms=3, label=f"{label} top-1")
            top5 = [r for r in ev if "top5" in r]
            ax_acc.plot([r[x] for r in top5], [r["top5"] * 100 for r in top5], "s--",
                        color=color, ms=3, label=f"{label} top-5")
        ax_lr.plot(xs, [r["lr"] for r in train], color=color, marker=marker, label=label)
        wd = [r for r in train if "weight_decay" in r]
        if wd:
            ax_wd = ax_wd or ax_lr.twinx()
            ax_wd.plot([r[x] for r in wd], [r["weight_decay"] for r in wd], "--", color=color,
                       marker=marker)
        rate_key = next((k for k in train[0] if k.endswith("_per_s")), None)
        if rate_key:
            ax_rate.plot(xs, [r.get(rate_key, math.nan) for r in train], color=color,
                         marker=marker, label=f"{label} ({rate_key.replace('_per_s', '')}/s)")
        _plot_phases(phase_axes[i], xs, fractions[i], colors, label, xlabel)

    # cross-entropy is positive; a log axis keeps the late small changes (and a diverged
    # run's spike) readable in one panel
    if all(y > 0 for line in ax_loss.lines for y in line.get_ydata() if math.isfinite(y)):
        ax_loss.set_yscale("log")
    if ax_wd is not None:
        ax_wd.set_ylabel("weight decay (dashed)")
        values = {y for line in ax_wd.lines for y in line.get_ydata()}
        if len(values) == 1 and (v := values.pop()) > 0:  # constant: 0, v, 2v, not 1e-9 ticks
            ax_wd.set_ylim(0, 2 * v)
            ax_wd.set_yticks([0, v, 2 * v])
    if not ax_acc.lines:
        ax_acc.text(0.5, 0.5, "no top-1/top-5 eval records", ha="center", va="center",
                    transform=ax_acc.transAxes)
    for ax, ylabel, title in ((ax_loss, "loss", "training loss (faint: logged, solid: smoothed)"),
                              (ax_acc, "test accuracy [%]", "eval top-1 (o) and top-5 (s)"),
                              (ax_lr, "learning rate", "learning rate"),
                              (ax_rate, "samples per second", "training throughput")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_phases(ax, xs: list, fractions: dict[str, list[float]], colors: dict[str, str],
                 label: str, xlabel: str) -> None:
    ax.stackplot(xs, *fractions.values(), labels=[p[:-2] for p in fractions],
                 colors=[colors[p] for p in fractions])
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of step time")
    ax.set_title(f"phase times: {label}")
    # outside the stack, to its right: inside it covered the data
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def default_out(folders: list[Path]) -> Path:
    """One run: <run>/curves.png. Several: beside them, in their common folder, named after
    all of them (not inside the first run's folder)."""
    if len(folders) == 1:
        return folders[0] / "curves.png"
    parent = Path(os.path.commonpath([str(f.resolve()) for f in folders]))
    return parent / ("curves_" + "+".join(f.name for f in folders) + ".png")


def main(argv: list[str] | None = None, prog: str = "hpcsgd plot run") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<name>)")
    parser.add_argument("--out", type=Path, help="PNG to write (default: see above)")
    parser.add_argument("--x", choices=("step", "epoch"), default="step",
                        help="x axis (default: step)")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(folder) for folder in args.runs]
    except RunError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    if len({r["name"] for r in runs}) < len(runs):  # same name in two places: show the paths
        for run, folder in zip(runs, args.runs):
            run["name"] = str(folder)
    out = args.out or default_out(args.runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = figure(runs, args.x)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
