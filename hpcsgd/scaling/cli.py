""".venv/bin/python tools/scaling_model.py report
.venv/bin/python tools/scaling_model.py ttt --job jobs/<name>.toml
.venv/bin/python tools/scaling_model.py ttt --node-type knl-7250 --nodes 1536 --local-batch 32 \
    --epochs 100 [--ranks-per-node 1] [--evaluations 1]

The scaling model of ResNet-50 data-parallel SGD (hpcsgd.scaling): report, plots, time to train.
`report` regenerates docs/scaling.md and docs/scaling_*.png from the paper's tables
(hpcsgd/scaling/paper.py), the spec sheets (hardware.py) and this machine's measurements
(docs/measurements/this_machine.json, made by tools/measure_node.py); it needs matplotlib.
`ttt` prints the predicted time to train of one configuration as JSON. Node types: knl-7250
(Stampede2), skx-8160 (MareNostrum 4; a rank is a two-socket node), this-machine (measured).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from hpcsgd.scaling import document  # noqa: E402
from hpcsgd.scaling.jobs import Job, clusters, predict, read_job  # noqa: E402
from hpcsgd.scaling.model import iteration  # noqa: E402
from hpcsgd.scaling.paper import QUOTED_EFFICIENCY  # noqa: E402
from hpcsgd.scaling.report import efficiency_curve  # noqa: E402

MEASUREMENTS = ROOT / "docs" / "measurements" / "this_machine.json"
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


def cmd_report(args) -> None:
    ctx = document.build(args.measurements, ROOT / "jobs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(document.render(ctx))
    plot_time_per_epoch(ctx, args.out.parent / "scaling_time_per_epoch.png")
    plot_efficiency(ctx, args.out.parent / "scaling_efficiency.png")
    print(f"wrote {args.out} and {args.out.parent}/scaling_*.png")


def cmd_ttt(args) -> None:
    if args.job:
        try:
            job = read_job(args.job)
        except (OSError, ValueError) as e:  # tomllib.TOMLDecodeError is a ValueError
            raise SystemExit(f"ttt: {e}")
    else:
        missing = [k for k in ("node_type", "nodes", "local_batch", "epochs")
                   if getattr(args, k) is None]
        if missing:
            flags = ", ".join("--" + k.replace("_", "-") for k in missing)
            raise SystemExit(f"ttt: give --job, or also {flags}")
        ppn = args.ranks_per_node
        try:
            job = Job(args.node_type, args.nodes, ppn, args.local_batch * args.nodes * ppn,
                      args.epochs, evaluations=args.evaluations, source="command line")
        except ValueError as e:
            raise SystemExit(f"ttt: {e}")
    try:
        result = predict(job, clusters(args.measurements))
    except ValueError as e:
        raise SystemExit(f"ttt: {e}")
    result = {"job": job.source, "node_type": job.node_type, "nodes": job.nodes,
              "ranks_per_node": job.ranks_per_node, "local_batch": job.local_batch,
              "epochs": job.epochs, "evaluations": job.evaluations, **result,
              "total_min": result["total_s"] / 60}
    print(json.dumps(result, indent=2))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="ResNet-50 scaling model: report and time to train")
    ap.add_argument("--measurements", type=Path, default=MEASUREMENTS)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rep = sub.add_parser("report", help="regenerate docs/scaling.md and the plots")
    rep.add_argument("--out", type=Path, default=ROOT / "docs" / "scaling.md")
    rep.set_defaults(func=cmd_report)
    ttt = sub.add_parser("ttt", help="time to train of one configuration")
    ttt.add_argument("--job", type=Path, help="a jobs/*.toml with [cluster] and [train]")
    ttt.add_argument("--node-type", dest="node_type")
    ttt.add_argument("--nodes", type=int)
    ttt.add_argument("--ranks-per-node", dest="ranks_per_node", type=int, default=1)
    ttt.add_argument("--local-batch", dest="local_batch", type=int)
    ttt.add_argument("--epochs", type=float)
    ttt.add_argument("--evaluations", type=int, default=1)
    ttt.set_defaults(func=cmd_ttt)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
