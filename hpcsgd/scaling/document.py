"""docs/scaling.md: every number in it is computed here from paper.py, hardware.py and the
measurements JSON, so rerunning `hpcsgd scaling report` regenerates it exactly."""
from __future__ import annotations

from pathlib import Path

from hpcsgd.scaling import report as rp
from hpcsgd.scaling.calibration import MN4_CALIBRATION_CPUS, STAMPEDE2_CALIBRATION
from hpcsgd.scaling.jobs import Job, clusters, find_jobs, predict
from hpcsgd.scaling.paper import (TABLE_II, TABLE_III, TABLE_IV, TABLE_IX, TABLE_V, TABLE_VI,
                                  TABLE_VII, TABLE_XII, TABLE_XIII)
from hpcsgd.scaling.projection import project

COMMAND = "hpcsgd scaling report"


def build(measurements: Path, jobs_root: Path) -> dict:
    known = clusters(measurements)
    s2, mn4 = known["knl-7250"], known["skx-8160"]
    by_system = {"stampede2": s2, "marenostrum4": mn4}
    ctx = {"s2": s2, "mn4": mn4, "known": known, "measurements": measurements,
           "table_v": rp.epoch_rows(s2, TABLE_V, set(STAMPEDE2_CALIBRATION)),
           "table_vi": rp.epoch_rows(mn4, TABLE_VI, rp.DEFAULT_CALIBRATION["marenostrum4"]),
           "choices": rp.calibration_choices(), "sensitivity": rp.sensitivity(s2)}
    ttt = {}
    for name, rows in (("II", TABLE_II), ("III", TABLE_III), ("IV", TABLE_IV), ("IX", TABLE_IX),
                       ("XII", TABLE_XII), ("VII", TABLE_VII), ("XIII", TABLE_XIII)):
        ttt[name] = rp.train_rows(by_system, rows, rp.DEFAULT_CALIBRATION)
    ctx["ttt"] = ttt
    jobs = {(j.global_batch, j.nodes): j for j in find_jobs(jobs_root)
            if j.node_type == s2.node.name}
    ix = []
    for row in TABLE_IX:
        job = jobs.get((row.global_batch, row.nodes)) or Job(
            "knl-7250", row.nodes, 1, row.global_batch, row.epochs,
            evaluations=int(row.epochs), source="inline (Table IX row)")
        ix.append({"row": row, "job": job, "pred": predict(job, known)})
    ctx["table_ix_jobs"] = ix
    if "this-machine" in known:
        node = known["this-machine"]
        ctx["projection"] = project(node.node, node.network, s2)
    return ctx


def _params(cluster) -> list[list]:
    rows = []
    for obj in (cluster.node, cluster.network, cluster.software):
        for key, src in obj.sources.items():
            value = getattr(obj, key.split(".")[0], None)
            if key.startswith("inter.") and value is not None:
                value = getattr(value, key.split(".")[1])
            if isinstance(value, float):
                value = f"{value:.4g}"
            elif not isinstance(value, (int, str)):
                value = "-"
            rows.append([f"{obj.name}.{key}", value, src])
    return rows


def _epoch_md(rows: list[dict], cpus: bool = False) -> str:
    head = ["local batch", "CPUs" if cpus else "nodes", "published s/epoch", "predicted",
            "error", "role", "compute ms", "comm ms", "scale-out ms"]
    return rp.markdown_table(head, [[
        r["local_batch"], r["cpus"] if cpus else r["nodes"], r["published_s"], r["predicted_s"],
        rp.pct(r["error"]), r["role"], r["breakdown"]["compute"] * 1e3,
        r["breakdown"]["comm"] * 1e3, r["breakdown"]["scaleout"] * 1e3] for r in rows])


def _ttt_md(rows: list[dict]) -> str:
    head = ["table", "global batch", "nodes", "local batch", "iterations (epochs)",
            "published min", "predicted min", "error", "role"]
    return rp.markdown_table(head, [[
        r["table"], r["global_batch"], f"{r['nodes']}" + (f" ({r['cpus']} CPUs)" if r["cpus"]
                                                          else ""),
        f"{r['local_batch']:g}", f"{r['iterations'] or '-'} ({r['epochs']:g})",
        r["published_min"], r["predicted_min"], rp.pct(r["error"]),
        r["role"] + (f": {r['note']}" if r["note"] else "")] for r in rows])


def _line(label: str, s: dict) -> str:
    return (f"- {label}: {s['n']} rows, median |error| {100 * s['median']:.1f}%, "
            f"max {100 * s['max']:.1f}%")


def render(ctx: dict) -> str:
    s2, mn4 = ctx["s2"], ctx["mn4"]
    v_all = rp.summary(ctx["table_v"], ("validation", "calibration"))
    v_val = rp.summary(ctx["table_v"])
    vi_val = rp.summary(ctx["table_vi"])
    ttt_s2 = [r for k in ("II", "III", "IV", "IX", "XII") for r in ctx["ttt"][k]]
    ttt_mn4 = [r for k in ("VII", "XIII") for r in ctx["ttt"][k]]
    ch = ctx["choices"]
    b256 = ch["with_both_256_rows"]
    slope = s2.software.scaleout_s_per_doubling
    biggest = max(ctx["table_v"], key=lambda r: r["nodes"])["breakdown"]
    alpha_eff = slope / (2 * s2.software.messages)
    b0 = s2.node.batch_overhead_images
    b0_ms = 1e3 * b0 / s2.node.images_per_s
    eff_knl = rp.efficiency_curve(s2, 32, [256])[0]
    eff_skx = rp.efficiency_curve(mn4, 32, [256])[0]
    val = sorted((r for r in ctx["table_v"] if r["role"] == "validation"),
                 key=lambda r: -abs(r["error"]))[:2]
    worst_rows = " and ".join(f"({r['local_batch']}, {r['nodes']})" for r in val)
    ttt_ii = 100 * ctx["ttt"]["II"][0]["error"]
    ii = ctx["ttt"]["II"][0]
    ii_epoch = 60 * ii["published_min"] / (ii["iterations"] * ii["global_batch"] / 1281167)
    t = {(r["local_batch"], r["nodes"]): r["published_s"] * r["local_batch"] * r["nodes"]
         for r in ctx["table_v"]}  # published seconds per iteration x 1,281,167
    growth = ", ".join(f"{(t[(b, n)] - t[(b, 256)]) / 1281.167:.0f} ms to {n} nodes at local "
                       f"batch {b}" for b, n in ((16, 1024), (32, 1024), (32, 1536)))
    step_512 = f"{100 * (t[(32, 512)] / t[(32, 256)] - 1):+.0f}%"
    step_1536 = f"{100 * (t[(32, 1536)] / t[(32, 512)] - 1):+.0f}%"
    backward = "-".join(f"{2 / 3 * r['breakdown']['compute'] * 1e3:.0f}"
                        for r in ctx["table_v"][:2])
    subsets = rp.markdown_table(
        ["third row (local batch, nodes)", "validation median", "validation max"],
        [[str([u for u in r["use"] if u[1] != 256 or u not in ((16, 256), (32, 256))][0]),
          f"{100 * r['val_median']:.1f}%", f"{100 * r['val_max']:.1f}%"]
         for r in sorted(b256, key=lambda r: r["use"])])
    out = [f"""# Scaling model: ResNet-50 time per epoch and time to train, 256-1536 nodes

Generated by `{COMMAND}` (after `tools/setup.sh`); do not edit by hand. It
reads `hpcsgd/scaling/paper.py` (the published numbers), `hpcsgd/scaling/hardware.py` (spec
sheets), `docs/measurements/{ctx['measurements'].name}` (this machine, written by
`.venv/bin/mpiexec -n 2 .venv/bin/python tools/measure_node.py allreduce` and
`.venv/bin/python tools/measure_node.py compute`) and `jobs/**/*.toml`.

## Summary

{_line("Stampede2 Table V, all 10 rows", v_all)} (target: median <= 5%, no row > 10%).
{_line("Stampede2 Table V, the 7 validation rows only", v_val)}.
{_line("MareNostrum 4 Table VI, the 3 rows not used for calibration", vi_val)}.
{_line("Time to train, Stampede2 (Tables II-IV, IX, XII), validation rows", rp.summary(ttt_s2))}.
{_line("Time to train, MareNostrum 4 (Tables VII, XIII), validation rows", rp.summary(ttt_mn4))}.
- Calibration inputs: Table V rows (16, 256), (32, 256), (16, 1024) and Table VI's 512-CPU
  row, plus spec sheets and the paper's text (section 3); nothing else was fitted.
"""]
    for item in ctx["table_ix_jobs"]:
        row, pred = item["row"], item["pred"]
        if row.global_batch in (32768, 49152):
            out.append(f"- Table IX, {row.global_batch} on {row.nodes} nodes, {row.epochs:g} "
                       f"epochs: predicted {pred['total_s'] / 60:.1f} min "
                       f"({pred['train_s'] / 60:.1f} training + {pred['eval_s'] / 60:.1f} "
                       f"evaluation), published {row.minutes:g} min.\n")
    if "projection" in ctx:
        proj = ctx["projection"]
        lo = min(p["overlapped_need_images_per_s"] for p in proj)
        hi = max(p["blocking_need_images_per_s"] for p in proj)
        ours = proj[0]["ours_images_per_s"]
        out.append(f"- hpcsgd at 256-1536 nodes: to match the paper, a node needs "
                   f"{lo:.0f}-{hi:.0f} ResNet-50 training images/s at local batch 32, "
                   f"{lo / ours:.0f}-{hi / ours:.0f}x "
                   f"this machine's {ours:.1f} (section 8).\n")
    out.append("""
## 1. The model

    t_iter = (B + B0) / r  +  exposed(allreduce)  +  s * max(0, log2(P / 256))  +  t_update + t_data

- **Compute** `(B + B0) / r` per rank and iteration: `r` is the node's ResNet-50 training
  rate at large local batch, `B0` the fixed cost of an iteration in images (so a node runs
  at `r * B / (B + B0)` images/s at local batch `B`).
- **Allreduce** of the 102.2 MB of fp32 gradients (25,557,032 parameters), split in the
  stack's messages (Intel Caffe + ML-SL: one per tensor, 161; hpcsgd: 25 MiB buckets), each
  costed by the alpha-beta-gamma model (`hpcsgd/scaling/allreduce.py`: ring,
  recursive halving-doubling (Rabenseifner), hierarchical). **Exposed** time: messages
  become ready through the backward pass (2/3 of compute) and go one at a time, so
  `exposed = max(tau, n tau - overlap * t_backward * (n-1)/n)` for `n` messages of `tau`.
- **Scale-out** `s` seconds per doubling of the node count past 256: an empirical term for
  what the alpha-beta model does not capture at scale (see 3.3). The knee at 256 comes from
  the paper's text (">97%" efficiency from 1 to 256 nodes, V-A1).
- **Update**: SGD with momentum streams 5 x 102 MB through memory. **Data**: 0 (the paper
  copies the LMDB to RAM and Caffe prefetches, V-A1; hpcsgd prefetches with decode workers,
  `data.prefetch_batches`, assumed to run on cores that `r` does not count).
- Time per epoch = 1,281,167 / (B x P) iterations x t_iter; time to train = iterations
  (or epochs x iterations per epoch) x t_iter + evaluations x (50,000 images forward only).

## 2. Parameters and where each comes from

""")
    out.append(rp.markdown_table(["parameter", "value", "source"], _params(s2) + [
        r for r in _params(mn4) if r[0].startswith("skx")] + [
        r for r in _params(mn4) if r[0].startswith("opa-mn4.topology")]))
    if "this-machine" in ctx["known"]:
        out.append("\n\nThis machine (`docs/measurements/this_machine.json`; the allreduce was "
                   "measured by `tools/measure_node.py`; see 8 for the compute rate):\n\n")
        out.append(rp.markdown_table(["parameter", "value", "source"],
                                     _params(ctx["known"]["this-machine"])))
    out.append(f"""

## 3. Calibration: which rows set which parameters

### 3.1 Stampede2 (KNL 7250), three parameters from three Table V rows

| parameter | value | set by |
|---|---|---|
| r (KNL node rate) | {s2.node.images_per_s:.1f} images/s | rows (16, 256) and (32, 256) |
| B0 (fixed cost) | {b0:.2f} images = {b0_ms:.0f} ms | rows (16, 256) and (32, 256) |
| s (scale-out) | {1e3 * slope:.1f} ms per doubling past 256 nodes | row (16, 1024) |

The two 256-node rows are the only ones at or below the knee, so they alone can set the
compute model; (16, 1024) sets the slope. This keeps the rows of all four timed Table IX
runs ((20, 512), (32, 512), (32, 1024), (32, 1536)) among the 7 validation rows. The
remaining spec-sheet terms (communication, update) are subtracted before solving. The
choice of rows was made after seeing Table V, so 3.4 shows what every other choice gives.

### 3.2 MareNostrum 4 (Skylake 8160), one parameter from one Table VI row

r = {mn4.node.images_per_s:.1f} images/s per two-socket node from the {MN4_CALIBRATION_CPUS}-CPU
row (local batch 32, 256 nodes) alone. B0, s and the knee are carried over from Stampede2
(same Intel Caffe + ML-SL, same Omni-Path); the network and memory are spec-sheet values.
The paper notes that Skylake "sustains small local batches more efficiently" (VII), so the
KNL B0 is expected to overpredict the local-batch-16 rows.

### 3.3 What the alpha-beta model explains, and what it does not

With spec-sheet Omni-Path numbers (1 us, 12.5 GB/s) and ML-SL's overlap, the exposed
allreduce at 1536 nodes is {1e3 * biggest['comm']:.2f} ms per iteration, while Table V's
iteration time grows by {growth} from 256 nodes. Making the network 10x slower in latency
changes no Table V prediction by more than {100 * ctx['sensitivity']['alpha x10']:.2f}%,
2x slower in bandwidth by more than {100 * ctx['sensitivity']['beta x2']:.2f}%: the
bandwidth term (2 x 102 MB / 12.5 GB/s = 16 ms) hides behind a {backward} ms backward
pass. The growth therefore sits in the scale-out term. Read as latency, it is 2 x 161
messages x alpha_eff per doubling (two more halving-doubling steps per message), so
alpha_eff = {1e6 * alpha_eff:.0f} us, about 100x the fabric's: jitter and synchronisation
waits at scale, not wire time. The model cannot tell these causes apart; it carries the
observed growth to other configurations and no further.

### 3.4 How much the result depends on the choice of calibration rows

Of the {ch['n']} three-row subsets of Table V that identify r, B0 and s (two local batches,
one row past the knee, a full-rank design, a positive rate; the fit is solved exactly, so
every machine prints the same figures), {ch['meets_target']} meet the target on all 10
rows; the validation-median error over all of them has quartiles
{', '.join(f'{100 * q:.1f}%' for q in ch['val_median_quartiles'])}. Every subset that
contains both 256-node rows, by its third row:

{subsets}

A third row at 1024 or 1536 nodes gives similar results; one at 512 or 768 nodes sets the
slope from Table V's steepest step (iteration time {step_512} from 256 to 512 nodes,
against {step_1536} from 512 to 1536 at local batch 32) and misses the larger runs.

## 4. Stampede2, Table V (time per epoch)

""")
    out.append(_epoch_md(ctx["table_v"]))
    out.append(f"\n\n{_line('all rows', v_all)}\n{_line('validation rows', v_val)}\n")
    out.append("\n## 5. MareNostrum 4, Table VI (time per epoch, throughput)\n\n")
    out.append(_epoch_md(ctx["table_vi"], cpus=True))
    out.append("\n\n" + rp.markdown_table(
        ["local batch", "CPUs", "published images/s", "predicted", "error"],
        [[r["local_batch"], r["cpus"], r["published_throughput"], r["predicted_throughput"],
          rp.pct(r["predicted_throughput"] / r["published_throughput"] - 1)]
         for r in ctx["table_vi"]]))
    out.append(f"\n\n{_line('validation rows (time per epoch)', vi_val)}\n")
    out.append("""
## 6. Time to train, every published run

Predicted = iterations (epochs where no iteration count is given) x predicted t_iter + one
final evaluation; the paper's per-epoch averages already contain its in-run evaluations.
"calibration run" rows share (local batch, nodes) with a calibration row and are not
independent. Tables XII and XIII are the paper's own projections (48/64/78 epochs x its
time per epoch), compared here like the rest. The time-per-epoch tables were computed from
these same runs (VI says so), so the rows mostly restate sections 4-5; the new evidence is
in the runs Table V lacks: 720 nodes at local batch 16 (II) and local batch 8 (IV).

""")
    for key in ("II", "III", "IV", "IX", "XII", "VII", "XIII"):
        out.append(f"### Table {key}\n\n{_ttt_md(ctx['ttt'][key])}\n\n")
    out.append(f"{_line('Stampede2 validation rows', rp.summary(ttt_s2))}\n"
               f"{_line('MareNostrum 4 validation rows', rp.summary(ttt_mn4))}\n")
    out.append(_table_ix_md(ctx))
    out.append(_projection_md(ctx))
    out.append(f"""
## 9. Plots

![time per epoch](scaling_time_per_epoch.png)

![efficiency](scaling_efficiency.png)

`scaling_time_per_epoch.png`: published (markers; filled = calibration) and predicted
(lines) time per epoch. `scaling_efficiency.png`: weak-scaling efficiency t_iter(1 node) /
t_iter(P) in the style of Figs. 1-2 (their curves are not in our copy of the paper, so the
published points are the text's quoted efficiencies and Table V/VI relative to 256 nodes).

## 10. Limits

- The scale-out term is fitted, not derived: it reproduces the growth Table V shows past
  256 nodes and says nothing about its cause, so it cannot tell how a different fabric or
  stack would fare; we apply it to hpcsgd as an assumption.
- Below 256 nodes the model has only spec-sheet communication: efficiency from 1 to 256
  nodes comes out {100 * eff_knl:.1f}% on KNL (paper: "above 97%") and {100 * eff_skx:.1f}%
  on Skylake, where the paper quotes "around 90%" from 1 to 512 CPUs: a miss the
  published tables cannot calibrate (no row below 256 nodes).
- Table V has a step between 256 and 512 nodes that no smooth model follows; the worst
  validation rows are {worst_rows}, on either side of it.
- MareNostrum 4 borrows B0 from KNL; its local-batch-16 rows come out slow by up to
  {100 * max(r['error'] for r in ctx['table_vi']):.0f}% (the paper: Skylake "sustains small
  local batches more efficiently"). Table II's 8192-on-256 run (140 min) is {ttt_ii:.0f}%
  off although its (32, 256) is a calibration row: that run averaged {ii_epoch:.1f} s per
  epoch, not Table V's 85.
- The projection of hpcsgd uses our allreduce constants measured on one 2-core machine in
  shared memory; a cluster NIC and host will differ. Rerun `tools/measure_node.py` on the
  target node and regenerate.
""")
    return "".join(out)


def _relative(source: str) -> str:
    """A job file's path from the repository root (the report must not name our checkout)."""
    parts = Path(source).parts
    return str(Path(*parts[parts.index("jobs"):])) if "jobs" in parts else source


def _table_ix_md(ctx: dict) -> str:
    rows = []
    for item in ctx["table_ix_jobs"]:
        row, job, pred = item["row"], item["job"], item["pred"]
        total = pred["total_s"] / 60
        rows.append([row.global_batch, row.nodes, job.local_batch, job.iterations,
                     f"{job.imagenet_epochs:.1f}", row.minutes, pred["train_s"] / 60, pred["eval_s"] / 60, total,
                     rp.pct(None if row.minutes is None else total / row.minutes - 1),
                     _relative(job.source)])
    have_jobs = any("inline" not in item["job"].source for item in ctx["table_ix_jobs"])
    note = ("The rows are predicted from the job files under `jobs/` (jobs/make_jobs.py) that "
            "match the row's global batch and nodes: the iterations are those hpcsgd runs for "
            "the file's `train.epochs`, which equal the paper's; epochs = iterations x batch "
            "/ 1,281,167 (Table IX rounds row 3's 102.4 to 100)."
            if have_jobs else
            "No Table IX job files exist under `jobs/` yet, so the rows are built inline from "
            "the paper's parameters (one rank per KNL node, evaluation every epoch as "
            "hpcsgd does by default). When the issue-6 configs land, the same code reads "
            "them instead (`hpcsgd scaling time-to-train --job jobs/....toml`).")
    return ("## 7. Table IX from job configs\n\n" + note + "\n\n" + rp.markdown_table(
        ["global batch", "nodes", "local batch", "iterations", "epochs", "published min",
         "train min",
         "eval min", "total min", "error", "source"], rows) + "\n")


def _projection_md(ctx: dict) -> str:
    if "projection" not in ctx:
        return "\n## 8. Projection of hpcsgd\n\nNo measurements found; run tools/measure_node.py.\n"
    proj = ctx["projection"]
    node = ctx["known"]["this-machine"].node
    rows = [[p["nodes"], p["paper_epoch_s"], p["target_iter_s"] * 1e3, p["scaleout_s"] * 1e3,
             p["blocking_comm_s"] * 1e3, p["blocking_need_images_per_s"],
             p["blocking_need_images_per_s"] / p["ours_images_per_s"],
             p["overlapped_comm_s"] * 1e3, p["overlapped_need_images_per_s"],
             p["overlapped_need_images_per_s"] / p["ours_images_per_s"],
             p["overlapped_ours_epoch_s"]] for p in proj]
    worst = max(p["blocking_need_images_per_s"] / p["ours_images_per_s"] for p in proj)
    saved = [p["blocking_comm_s"] - p["overlapped_comm_s"] for p in proj]
    gain = f"{1e3 * min(saved):.0f}-{1e3 * max(saved):.0f}"
    shares = [d / p["target_iter_s"] for d, p in zip(saved, proj)]
    share = f"{100 * min(shares):.0f}-{100 * max(shares):.0f}%"
    s2 = ctx["s2"].node
    compute_note = ""
    if "reported" in node.sources["images_per_s"]:
        compute_note = (
            "\n\n**Compute rate not measured by us.** `tools/measure_node.py compute` needs an "
            "idle machine, and this one was shared throughout (the attempt, with its load average, "
            "is kept as `compute_rejected` in the JSON). The rate above is the engineer's idle "
            "measurement (fp32, channels_last, 2 threads, batch 32; bf16 gives 10.5 images/s, "
            "which would roughly halve the multiples below). Rerun on an idle machine and "
            "regenerate.")
    msgs = ctx["known"]["this-machine"].software.messages
    knl_b32 = 32 * s2.images_per_s / (32 + s2.batch_overhead_images)
    best = min(p["overlapped_need_images_per_s"] / p["ours_images_per_s"] for p in proj)
    return f"""
## 8. Projection of hpcsgd

What one node running hpcsgd must sustain, at local batch 32, to match the paper's time
per epoch at each scale. Our stack on an Omni-Path cluster: per-message latency = fabric
1 us + our measured {node.name} software latency; bandwidth = the slower of the fabric and
our measured host-side rate; 25 MiB buckets ({msgs} messages); the Stampede2 scale-out term
included (assumed to hit any stack at that scale). "blocking" is `comm.overlap = false`
(allreduce after backward), "overlapped" the default communication thread, at ideal
overlap (not measured: this machine has no core to spare for it). Our node
today: {ctx['projection'][0]['ours_images_per_s']:.2f} images/s at local batch 32
(r = {node.images_per_s:.2f}, B0 = {node.batch_overhead_images:.1f}; source:
{node.sources['images_per_s']}).{compute_note}

""" + rp.markdown_table(
        ["nodes", "paper s/epoch", "target ms/iter", "scale-out ms", "blocking comm ms",
         "need img/s (blocking)", "x our node", "overlapped comm ms", "need img/s (overlapped)",
         "x our node", "hpcsgd on our nodes, s/epoch"], rows) + f"""

So a node must run ResNet-50 training {best:.0f}-{worst:.0f}x faster than this one does
today: about {best * node.compute_cores:.0f}-{worst * node.compute_cores:.0f} cores of this
machine's kind if the rate grew linearly with cores (a lower bound: it grows a little
less than linearly), in
line with the paper's KNL node ({knl_b32:.0f} images/s at local batch 32 by our calibration)
plus what our exposed allreduce costs. The overlapped engine is worth {gain} ms per
iteration ({share} of the paper's iteration time). The last column is hpcsgd on such a
cluster built from nodes like this one, default (overlapped) communication.
"""
