"""The two figures of docs/scaling.md: time per epoch (model against Tables V and VI) and
weak-scaling efficiency (from 1 node and relative to 256 nodes). matplotlib (Agg) is imported
only when a figure is drawn."""
from __future__ import annotations

from pathlib import Path

from hpcsgd.scaling.model import iteration
from hpcsgd.scaling.paper import QUOTED_EFFICIENCY
from hpcsgd.scaling.report import efficiency_curve

NODES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048]
COLOR = {8: "C4", 16: "C0", 20: "C1", 24: "C2", 32: "C3"}  # one colour per local batch


def plot_time_per_epoch(ctx: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hpcsgd.scaling.model import epoch_seconds

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, cluster, title, per_cpu in (
            (axes[0], "table_v", ctx["s2"], "Stampede2 (KNL 7250), Table V", False),
            (axes[1], "table_vi", ctx["mn4"], "MareNostrum 4 (2 x Xeon 8160), Table VI", True)):
        rows = ctx[key]
        for b in sorted({r["local_batch"] for r in rows}):
            color = COLOR[b]
            mine = [r for r in rows if r["local_batch"] == b]
            xs = [n for n in NODES if 128 <= n <= 2048]
            ax.plot([x * (2 if per_cpu else 1) for x in xs],
                    [epoch_seconds(cluster, b, n) for n in xs], color=color, lw=1.2,
                    label=f"local batch {b}: model")
            for r in mine:
                x = r["cpus"] if per_cpu else r["nodes"]
                filled = r["role"] == "calibration"
                ax.plot(x, r["published_s"], "o", color=color, ms=7,
                        mfc=color if filled else "white")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("CPUs (sockets)" if per_cpu else "KNL nodes")
        ax.set_ylabel("time per epoch [s]")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, title="circles: published (filled = calibration)",
                  title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_efficiency(ctx: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    for i, (system, cluster, batches) in enumerate((("stampede2", ctx["s2"], (16, 32)),
                                                   ("marenostrum4", ctx["mn4"], (16, 24, 32)))):
        for b in batches:
            ax.plot(NODES, efficiency_curve(cluster, b, NODES), ls="-" if i == 0 else "--",
                    color=COLOR[b], label=f"{'KNL' if i == 0 else 'SKX'} local batch {b}: model")
    for system, b, lo, hi, eff, _ in QUOTED_EFFICIENCY:
        if lo == 1:
            ax.plot(hi, eff, "s" if system == "stampede2" else "^", color="k", ms=7,
                    mfc="white", label=f"quoted ({'KNL' if system == 'stampede2' else 'SKX'}, "
                                       f"1->{hi} nodes)")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0.6, 1.02)
    ax.set_xlabel("nodes")
    ax.set_ylabel("weak-scaling efficiency vs 1 node")
    ax.set_title("Efficiency from 1 node (Figs. 1-2 style)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)

    ax = axes[1]  # relative to the 256-node run: every Table V / VI row has a baseline
    for i, (key, cluster, label) in enumerate((("table_v", ctx["s2"], "KNL"),
                                               ("table_vi", ctx["mn4"], "SKX"))):
        rows = ctx[key]
        for b in sorted({r["local_batch"] for r in rows}):
            base = [r for r in rows if r["local_batch"] == b and r["nodes"] == 256]
            if not base:  # no published 256-node run to compare with
                continue
            ref = iteration(cluster, b, 256).total
            xs = [n for n in NODES if n >= 256]
            ax.plot(xs, [ref / iteration(cluster, b, n).total for n in xs],
                    ls="-" if i == 0 else "--", color=COLOR[b], label=f"{label} batch {b}: model")
            # published t_iter(256) / t_iter(P) = 256 t_epoch(256) / (P t_epoch(P))
            pts = [(r["nodes"], 256 * base[0]["published_s"] / (r["nodes"] * r["published_s"]))
                   for r in rows if r["local_batch"] == b]
            ax.plot(*zip(*pts), "o" if i == 0 else "^", color=COLOR[b], mfc="white", ms=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("nodes")
    ax.set_ylabel("efficiency vs 256 nodes")
    ax.set_title("Relative to 256 nodes (markers: Tables V, VI)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
