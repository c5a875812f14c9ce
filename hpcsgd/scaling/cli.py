"""hpcsgd scaling report [--out docs/scaling.md]
hpcsgd scaling time-to-train --job jobs/<name>.toml
hpcsgd scaling time-to-train --node-type knl-7250 --nodes 1536 --local-batch 32 --epochs 100 \
    [--ranks-per-node 1] [--evaluations 1]

The scaling model of ResNet-50 data-parallel SGD (hpcsgd.scaling): report, plots, time to train.
`report` regenerates docs/scaling.md and docs/scaling_*.png (beside --out) from the paper's
tables (hpcsgd/scaling/paper.py), the spec sheets (hardware.py), the job files in jobs/ and
this machine's measurements (docs/measurements/this_machine.json, made by
tools/measure_node.py). `time-to-train` (also `ttt`) prints the predicted time to train of one
configuration as JSON. Node types: knl-7250 (Stampede2), skx-8160 (MareNostrum 4; a rank is a
two-socket node), this-machine (measured).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hpcsgd.scaling import document
from hpcsgd.scaling.jobs import Job, clusters, predict, read_job

# the source checkout (editable install): the report reads its jobs/ and writes its docs/
ROOT = Path(__file__).resolve().parents[2]
MEASUREMENTS = ROOT / "docs" / "measurements" / "this_machine.json"


class InputError(Exception):
    """A job file or parameters the model cannot use; the message names them."""


def cmd_report(args) -> None:
    from hpcsgd.scaling.plots import plot_efficiency, plot_time_per_epoch
    if not args.jobs.is_dir():
        raise InputError(f"job folder {str(args.jobs)!r} (--jobs) does not exist")
    ctx = document.build(args.measurements, args.jobs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(document.render(ctx))
    plot_time_per_epoch(ctx, args.out.parent / "scaling_time_per_epoch.png")
    plot_efficiency(ctx, args.out.parent / "scaling_efficiency.png")
    print(f"wrote {args.out} and {args.out.parent}/scaling_*.png")


def cmd_ttt(args) -> None:
    if args.job:
        if not args.job.is_file():
            raise InputError(f"job file {str(args.job)!r} (--job) does not exist")
        try:
            job = read_job(args.job)
        except (OSError, ValueError) as e:  # tomllib.TOMLDecodeError is a ValueError
            raise InputError(str(e)) from e
    else:
        missing = [k for k in ("node_type", "nodes", "local_batch", "epochs")
                   if getattr(args, k) is None]
        if missing:
            flags = ", ".join("--" + k.replace("_", "-") for k in missing)
            raise InputError(f"give --job, or also {flags}")
        ppn = args.ranks_per_node
        try:
            job = Job(args.node_type, args.nodes, ppn, args.local_batch * args.nodes * ppn,
                      args.epochs, evaluations=args.evaluations, source="command line")
        except ValueError as e:
            raise InputError(str(e)) from e
    try:
        result = predict(job, clusters(args.measurements))
    except ValueError as e:
        raise InputError(str(e)) from e
    result = {"job": job.source, "node_type": job.node_type, "nodes": job.nodes,
              "ranks_per_node": job.ranks_per_node, "local_batch": job.local_batch,
              "epochs": job.epochs, "evaluations": job.evaluations, **result,
              "total_min": result["total_s"] / 60}
    print(json.dumps(result, indent=2))


def main(argv: list[str] | None = None, prog: str = "hpcsgd scaling") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measurements", type=Path, default=MEASUREMENTS,
                    help="this machine's measurements (optional: without it, no this-machine)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="report|time-to-train")
    rep = sub.add_parser("report", help="regenerate docs/scaling.md and the plots",
                         description="Regenerate docs/scaling.md and docs/scaling_*.png.")
    rep.add_argument("--out", type=Path, default=ROOT / "docs" / "scaling.md",
                     help="the Markdown file; the PNGs go beside it (default: docs/scaling.md)")
    rep.add_argument("--jobs", type=Path, default=ROOT / "jobs",
                     help="job folder whose Table IX jobs are predicted (default: jobs/)")
    rep.set_defaults(func=cmd_report)
    ttt = sub.add_parser("time-to-train", aliases=["ttt"],
                         help="predicted time to train of one configuration (JSON)",
                         description="Predicted time to train of one job or configuration.")
    ttt.add_argument("--job", type=Path, help="a jobs/*.toml with [cluster] and [train]")
    ttt.add_argument("--node-type", dest="node_type",
                     help="knl-7250, skx-8160 or this-machine (without --job)")
    ttt.add_argument("--nodes", type=int)
    ttt.add_argument("--ranks-per-node", dest="ranks_per_node", type=int, default=1)
    ttt.add_argument("--local-batch", dest="local_batch", type=int)
    ttt.add_argument("--epochs", type=float)
    ttt.add_argument("--evaluations", type=int, default=1)
    ttt.set_defaults(func=cmd_ttt)
    args = ap.parse_args(argv)
    try:
        if args.measurements != MEASUREMENTS and not args.measurements.is_file():
            raise InputError(f"measurements file {str(args.measurements)!r} (--measurements) "
                             "does not exist")
        args.func(args)
    except InputError as e:
        print(f"{prog} {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
