"""hpcsgd plot schedule --paper all --out-dir docs
hpcsgd plot schedule JOB.toml [--section.key=value ...] --out FILE.png [--images N]

LR and weight decay versus epoch, evaluated at every iteration with the run's own schedule
plan (hpcsgd.schedule.plan.plan_at), as a PNG: collapse phases shaded, snapshots marked.

`--paper` draws the papers' schedules from the recipes below (PRESETS: each one is a list of
ordinary `--section.key=value` options, so any of them is also a job):
  codreanu-fig3  Codreanu et al. Fig. 3 shape: batch 64K, LR 6.4, linear decay, multi-step
                 weight decay and a final collapse (the figure itself is lost from the text;
                 the weight-decay epochs are illustrative)
  codreanu-fig4  Codreanu et al. Fig. 4: the cyclic collapsed-ensemble schedule, batch 4096
  date-fig10     DATE Fig. 10: LeNet/MNIST at batch 8K, the tuned baseline (linear scaling,
                 2-epoch warmup, x0.1 at 10, 20, 27) against DATE (LEGW, sqrt, roller coaster)
The iterations per epoch are the trainer's: images / global batch (--images, default by data set),
or for an lstm_lm job the BPTT windows of one training stream.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hpcsgd.config import ConfigError, load_config  # noqa: E402
from hpcsgd.lm.streams import steps_per_epoch, stream_length  # noqa: E402
from hpcsgd.schedule.plan import plan_at, resolve_plan, snapshot_epochs  # noqa: E402

IMAGES = {"fashion-mnist": 60000, "imagenet": 1281167}
PTB_TRAIN_TOKENS = 929589
"""Tokens of Mikolov's PTB training split with <eos> (hpcsgd/lm/corpus.py), for lstm_lm jobs."""
MAX_POINTS = 20000

_IMAGENET = ["--data.name=imagenet", "--model.name=resnet50"]
_DATE_8K = ["--train.global_batch=8192", "--train.epochs=30", "--optim.base_lr=1.25e-3",
            "--schedule.lr_scaling=sqrt", "--schedule.base_batch=1024", "--schedule.legw=true",
            "--schedule.warmup_epochs=2", "--schedule.decay=roller_coaster",
            "--optim.weight_decay=0", "--optim.date=true"]
PRESETS = {
    "codreanu-fig3": [("batch 65536, LR 6.4", _IMAGENET + [
        "--train.global_batch=65536", "--train.epochs=107", "--optim.base_lr=6.4",
        "--schedule.warmup_epochs=10", "--schedule.warmup_start_lr=0.1",
        "--schedule.decay=poly", "--schedule.power=1", "--optim.weight_decay=5e-5",
        "--schedule.wd_milestones=[40]", "--schedule.wd_values=[7.5e-5]",
        "--schedule.collapse_epochs=7", "--schedule.collapse_wd_factor=1.3333333333333333"])],
    "codreanu-fig4": [("batch 4096, cyclic", _IMAGENET + [
        "--train.global_batch=4096", "--train.epochs=120", "--optim.base_lr=0.1",
        "--schedule.lr_scaling=linear", "--schedule.base_batch=256",
        "--schedule.warmup_epochs=5", "--schedule.warmup_start_lr=0.1",
        "--schedule.decay=cyclic", "--optim.weight_decay=5e-5",
        "--schedule.cyclic_snapshot_start=true"])],
    "date-fig10": [
        ("tuned baseline at 8K (Fig. 10.1 + linear scaling)", [
            "--train.global_batch=8192", "--train.epochs=30", "--optim.base_lr=1.25e-3",
            "--schedule.lr_scaling=linear", "--schedule.base_batch=1024",
            "--schedule.warmup_epochs=2", "--schedule.decay=multistep",
            "--schedule.milestones=[10, 20, 27]", "--optim.weight_decay=0"]),
        ("DATE at 8K (Fig. 10.5: LEGW + sqrt + roller coaster)", _DATE_8K),
        ("DATE, the worked example's (1 - 2/30) reading", _DATE_8K + [
            "--schedule.roller_coaster_warmup=baseline"]),
    ],
}


def iterations_per_epoch(cfg, samples: int | None = None) -> float:
    """The trainer's iterations per epoch: images / global batch, or for the language model
    the BPTT windows of one stream (hpcsgd/lm/streams.py); `samples` overrides the data set's
    images (or training tokens)."""
    if cfg.model.name == "lstm_lm":
        tokens = int((samples or PTB_TRAIN_TOKENS) * cfg.lm.train_fraction)
        return steps_per_epoch(stream_length(tokens, cfg.train.global_batch), cfg.lm.seq_len)
    return (samples or IMAGES[cfg.data.name]) / cfg.train.global_batch


def schedule_curve(cfg, images: int | None = None) -> dict:
    """Per-iteration epochs, LR, weight decay and collapse flags of one config."""
    plan = resolve_plan(cfg)
    ipe = iterations_per_epoch(cfg, images)
    total = round(cfg.train.epochs * ipe)
    stride = max(1, total // MAX_POINTS)
    its = list(range(0, total + 1, stride))
    points = [plan_at(it, ipe, plan) for it in its]
    return {"epoch": [it / ipe for it in its], "lr": [p.lr for p in points],
            "wd": [p.weight_decay for p in points], "collapse": [p.collapse for p in points],
            "snapshots": snapshot_epochs(plan), "plan": plan, "iters_per_epoch": ipe}


def _collapse_spans(epochs, flags):
    spans, start = [], None
    for e, f in zip(epochs, flags):
        if f and start is None:
            start = e
        elif not f and start is not None:
            spans.append((start, e))
            start = None
    if start is not None:
        spans.append((start, epochs[-1]))
    return spans


def plot(curves: list[tuple[str, dict]], out: Path, title: str) -> None:
    fig, (ax_lr, ax_wd) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    for k, (label, c) in enumerate(curves):
        colour = f"C{k}"
        ax_lr.plot(c["epoch"], c["lr"], color=colour, lw=1.6, label=label)
        ax_wd.step(c["epoch"], c["wd"], where="post", color=colour, lw=1.4)
        for a, b in _collapse_spans(c["epoch"], c["collapse"]):
            for ax in (ax_lr, ax_wd):
                ax.axvspan(a, b, color=colour, alpha=0.12, lw=0)
        for e in c["snapshots"]:
            i = min(range(len(c["epoch"])), key=lambda j: abs(c["epoch"][j] - e))
            ax_lr.plot(e, c["lr"][i], "v", color=colour, ms=7)
    if any(c["snapshots"] for _, c in curves):
        ax_lr.plot([], [], "v", color="grey", label="snapshot")
    if any(any(c["collapse"]) for _, c in curves):
        ax_lr.axvspan(0, 0, color="grey", alpha=0.2, label="collapse (no scale/aspect aug.)")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title(title)
    ax_lr.grid(alpha=0.3)
    ax_lr.legend(fontsize=8)
    ax_wd.set_ylabel("weight decay")
    ax_wd.set_xlabel("epoch")
    ax_wd.grid(alpha=0.3)
    ax_wd.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def describe(label: str, c: dict) -> str:
    p = c["plan"]
    return (f"{label}: peak LR {p.peak_lr:.5g}, warmup {p.warmup_epochs:.4g} epochs, "
            f"{c['iters_per_epoch']:.2f} iterations/epoch, collapse from "
            f"{'-' if p.collapse_start is None else f'{p.collapse_start:g}'}, "
            f"snapshots at {c['snapshots'] or '-'}")


def main(argv: list[str] | None = None, prog: str = "hpcsgd plot schedule") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", nargs="?", help="job TOML (omit with --paper); any "
                        "--section.key=value after it overrides the TOML as in hpcsgd train")
    parser.add_argument("--paper", choices=[*PRESETS, "all"], help="a paper's schedules")
    parser.add_argument("--out", type=Path, help="PNG path (job mode)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs"),
                        help="folder of the --paper PNGs (default: docs)")
    parser.add_argument("--images", type=int, help="training images, or tokens for lstm_lm (default: the data set's)")
    args, overrides = parser.parse_known_args(argv)
    try:
        if args.paper:
            names = list(PRESETS) if args.paper == "all" else [args.paper]
            for name in names:
                curves = [(label, schedule_curve(load_config(None, opts), args.images))
                          for label, opts in PRESETS[name]]
                out = args.out_dir / f"schedules_{name.replace('-', '_')}.png"
                plot(curves, out, f"{name}: LR and weight decay per iteration")
                for label, c in curves:
                    print(describe(label, c))
                print(f"wrote {out}")
            return 0
        if not args.job or not args.out:
            parser.error("give a job TOML and --out, or --paper")
        c = schedule_curve(load_config(args.job, overrides), args.images)
        plot([(Path(args.job).stem, c)], args.out, f"{args.job}: LR and weight decay")
        print(describe(Path(args.job).stem, c))
        print(f"wrote {args.out}")
        return 0
    except ConfigError as e:
        print(f"{prog}: refused: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
