"""Core affinity: the plan and launcher flags for a node, the layout tuner, pinned vs unpinned.

    hpcsgd affinity plan [--config JOB.toml] [--ranks N | --ranks-per-node R] [--nodes 256]
        [--node-type knl-7250|skx-8160|auto] [--comm-cores -1] [--data-cores 0]
    flock /tmp/hpcsgd-bench.lock hpcsgd affinity tune [--ranks 1 2 3 4] [--rounds 1]
        [--model resnet50 --image-size 32 --batch 24 --steps 5 --budget-s 20]
    flock /tmp/hpcsgd-bench.lock hpcsgd affinity compare [--ranks 2] [--steps 150] [--rounds 3]

plan     prints the node's topology, each rank's compute / communication / data cores
         (hpcsgd/affinity/planner.py), the matching srun / MPICH / Intel MPI / Open MPI binding
         flags and variables, ML-SL's, and the OpenMP variables. hpcsgd applies the same plan
         inside each rank by itself (cluster.pin); the launcher flags keep other programs and
         a bound launcher consistent with it. --config reads the [cluster] section of a job;
         the rank count comes from --ranks/--ranks-per-node, else cluster.ranks_per_node, else
         the launch command in the job file's header comment (`# mpiexec -n 4 ...`), else the
         node type's default, and the output says which. Long CPU lists are wrapped inside
         double quotes (backslash-newline), so every printed command pastes as it is.
tune     runs every candidate layout for the given rank counts on this node as a short
         training-step benchmark (hpcsgd/bench/stepbench.py, ResNet-50 on random images),
         appends the measurements to --results (rounds of separate runs accumulate), prints
         the ranked table and the default layout against the best of its rank count, and
         writes the best layout as a config snippet (--snippet). Each run waits (up to
         --quiet-wait-s) for other processes to go quiet and records the share of the CPUs
         they took meanwhile; the table uses the runs where it was <= --max-foreign.
compare  the local Fashion-MNIST LeNet job (jobs/local/fashion_mnist.toml, real LMDB) for
         --steps steps with cluster.pin = true and false, alternating, --rounds times; prints
         each run's training throughput and the medians' ratio (quiet runs, and all runs).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpcsgd.affinity.launch import (launcher_env, launcher_flags, rank_env,
                                    ranks_in_launch_line, shell_lines)
from hpcsgd.affinity.planner import PRESETS, format_table, overlaps, plan_node, plan_rows
from hpcsgd.affinity.topology import discover, format_cpulist

# the source checkout (editable install): tune and compare run the trainer from there
ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or "mpiexec"


class PlanError(Exception):
    """Options that do not make a plan; the message names them."""


def job_ranks(args, cfg, job_text: str) -> tuple[int, int, str]:
    """(ranks per node, nodes, where the count came from): the command line, then the job's
    [cluster] section, then the launch line in its header comment, then the preset."""
    c = cfg.cluster if cfg is not None else None
    node_type = c.node_type if c is not None else args.node_type
    nodes = args.nodes or (c.nodes if c is not None and c.nodes else 1)
    if args.ranks:
        if args.ranks % nodes:
            raise PlanError(f"--ranks {args.ranks} over {nodes} nodes: not divisible")
        return args.ranks // nodes, nodes, "--ranks"
    if args.ranks_per_node:
        return args.ranks_per_node, nodes, "--ranks-per-node"
    if c is not None and c.ranks_per_node:
        return c.ranks_per_node, nodes, f"cluster.ranks_per_node in {args.config}"
    launch = ranks_in_launch_line(job_text)
    if launch is not None:
        total, line = launch
        if total % nodes:
            raise PlanError(f"{args.config}: its launch line starts {total} ranks, not divisible "
                            f"by cluster.nodes = {nodes}")
        return total // nodes, nodes, f"the launch line in {args.config}: {line}"
    default = PRESETS[node_type].ranks_per_node or 1
    hint = "; the job does not say: give --ranks N" if cfg is not None else ""
    return default, nodes, f"the {node_type} default ({default} per node){hint}"


def cmd_plan(args) -> int:
    node_type, comm, data, threads = args.node_type, args.comm_cores, args.data_cores, args.threads
    program = "python -m hpcsgd.train JOB.toml"
    cfg, text = None, ""
    if args.config:
        from hpcsgd.config import load_config
        cfg = load_config(args.config)  # ConfigError (a missing file too): one line, exit 2
        text = Path(args.config).read_text()
        c = cfg.cluster
        node_type = c.node_type
        comm, data, threads = c.comm_cores_per_rank, c.data_cores_per_rank, cfg.compute.threads
        program = f"python -m hpcsgd.train {args.config} --checkpoint.resume=auto"
    ranks, nodes, source = job_ranks(args, cfg, text)
    preset = PRESETS[node_type]
    topology = preset.topology or discover()
    try:
        plan = plan_node(topology, ranks=ranks, comm_cores=comm, data_cores=data,
                         threads=threads, preset=node_type)
    except ValueError as e:
        raise PlanError(str(e)) from e
    problems = overlaps(plan)
    print(f"node: {topology.describe()}")
    print(f"preset {node_type}: {preset.source}")
    print(f"ranks: {ranks * nodes} = {ranks} per node x {nodes} node(s), from {source}")
    print(f"\nplan, {ranks} rank(s) per node (CPU ids; one OpenMP thread per compute core):")
    rows = [row + [format_cpulist(r.mask)] for row, r in zip(plan_rows(plan), plan.ranks)]
    print(format_table(["local rank", "threads", "compute", "comm", "data", "bound to"], rows))
    if plan.unused:
        print(f"unused cores: {format_cpulist(plan.unused)}")
    print("roles overlap: " + ("; ".join(problems) if problems else "none"))
    print(f"\nlaunch on {nodes} node(s) (each rank bound to its block of cores):")
    for name, line in launcher_flags(plan, nodes=nodes, program=program).items():
        _print_command(name, line.split())
    print("\nthe same as environment variables, per launcher:")
    for name, env in launcher_env(plan).items():
        _print_command(name, [f"{k}={v}" for k, v in env.items()])
    if ranks > 1:
        print("\nexact per-rank OpenMP placement (set before the rank starts):")
        for r in plan.ranks:
            _print_command(f"rank {r.local_rank}", [f"{k}={v}" for k, v in rank_env(r).items()])
    return 1 if problems else 0


def _print_command(label: str, words: list[str]) -> None:
    """`label  command`, the command wrapped into lines that paste as one (shell_lines): a
    line that continues a word cut inside double quotes starts in column 0 (an indent there
    would become part of the value); the others are indented under the command."""
    lines = shell_lines(words)
    print(f"  {label:9s} {lines[0]}")
    for prev, line in zip(lines, lines[1:]):
        inside_quotes = prev.endswith("\\") and not prev.endswith(" \\")
        print(line if inside_quotes else f"  {'':9s}   {line}")


def cmd_tune(args) -> int:
    from hpcsgd.bench import tuner
    cores = len(os.sched_getaffinity(0))
    workload = ["--model", args.model, "--image-size", str(args.image_size),
                "--batch", str(args.batch), "--warmup", str(args.warmup),
                "--steps", str(args.steps), "--budget-s", f"{args.budget_s:g}"]
    command = "hpcsgd affinity tune " + " ".join(args.argv)
    results = Path(args.results)
    bad = [r for r in args.ranks if args.batch % r]
    if bad:
        print(f"--batch {args.batch} is not divisible by --ranks {bad}", file=sys.stderr)
        return 2
    if not args.report_only:
        cands = [c for c in tuner.candidates(cores, ranks=args.ranks, buckets=args.buckets)
                 if args.only is None or args.only in c.name]
        if not cands:
            print(f"--only {args.only!r}: no layout of {args.ranks} rank(s) is named so "
                  f"(e.g. 'default', 'pinned', 'unpinned')", file=sys.stderr)
            return 2
        print(f"{len(cands)} layouts x {args.rounds} round(s) on {cores} cores, workload "
              f"{' '.join(workload)}", flush=True)
        results.parent.mkdir(parents=True, exist_ok=True)
        shuffle = random.Random(time.time_ns()).shuffle
        for rnd in range(args.rounds):
            # a new random order every round: no layout always runs first after the lock
            order = list(cands)
            shuffle(order)
            for c in order:
                before = tuner.wait_for_quiet(args.max_foreign, args.quiet_wait_s)
                rec = tuner.run_candidate(c, workload, mpiexec=MPIEXEC, cwd=ROOT)
                rec["foreign_before"] = before
                with results.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                shown = (f"{rec['step_s'] * 1e3:7.0f} ms, others used {rec['foreign']:4.0%} "
                         "of the CPUs" if rec["ok"] else rec["error"])
                print(f"  round {rnd + 1}: {c.key:55s} {shown}", flush=True)
    everything = tuner.load_results(results)
    rows = tuner.summarize(everything, workload, max_foreign=args.max_foreign)
    measured = sum(1 for r in everything if r.get("ok") and r["workload"] == workload)
    print(f"\n{sum(r['rounds'] for r in rows)} of {measured} runs were quiet (other processes "
          f"took at most {args.max_foreign:.0%} of the CPUs meanwhile)")
    rows = [r for r in rows if r["ranks"] in args.ranks]
    if not rows:
        print(f"no successful measurements in {results} for this workload")
        return 1
    print(f"\nranked layouts, quiet runs only ({results}, workload {' '.join(workload)}):")
    print(tuner.ranked_table(rows))
    print("\ndefault layout against the best layout of the same rank count:")
    checks = tuner.default_vs_best(rows)
    for c in checks:
        verdict = "within 5%" if c["ratio"] <= 1.05 else "MORE than 5% slower"
        print(f"  {c['ranks']} rank(s): default {c['default_s'] * 1e3:.0f} ms, best "
              f"{c['best_s'] * 1e3:.0f} ms ({c['best']}): x{c['ratio']:.3f}, {verdict}")
    text = tuner.snippet(rows[0], command)
    Path(args.snippet).parent.mkdir(parents=True, exist_ok=True)
    Path(args.snippet).write_text(text)
    print(f"\nbest layout written to {args.snippet}:\n{text}")
    return 0


def cmd_compare(args) -> int:
    from hpcsgd.bench import tuner
    from hpcsgd.config import load_config
    job = Path(args.job)
    if not job.is_file() and (ROOT / job).is_file():  # the default, from another folder
        job = ROOT / job
    load_config(job)  # a bad job is refused here in one line, not by each training run
    out = Path(tempfile.mkdtemp(prefix="hpcsgd-affinity-"))
    runs: list[dict] = []
    try:
        for rnd in range(args.rounds):
            for pin in ((True, False) if rnd % 2 == 0 else (False, True)):
                run = _compare_run(args, tuner, job.resolve(), out, pin, rnd)
                if run is None:
                    return 1
                runs.append(run)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    quiet = [r for r in runs if r["foreign"] <= args.max_foreign]
    print(f"\n{args.job}, {args.ranks} ranks, {args.steps} steps; {len(quiet)} of {len(runs)} "
          f"runs quiet (others <= {args.max_foreign:.0%} of the CPUs)")
    for label, chosen in (("quiet runs", quiet), ("all runs", runs)):
        pinned = [r["rate"] for r in chosen if r["pin"]]
        unpinned = [r["rate"] for r in chosen if not r["pin"]]
        if pinned and unpinned:
            p, u = statistics.median(pinned), statistics.median(unpinned)
            print(f"  {label}: pinned {p:.0f} img/s (runs {', '.join(f'{x:.0f}' for x in pinned)}),"
                  f" unpinned {u:.0f} img/s (runs {', '.join(f'{x:.0f}' for x in unpinned)}); "
                  f"pinned / unpinned = {p / u:.3f}")
    return 0


def _compare_run(args, tuner, job: Path, out: Path, pin: bool, rnd: int) -> dict | None:
    """One training run of the comparison (None: it failed, its output printed)."""
    name = f"pin_{str(pin).lower()}_{rnd}"
    cmd = [MPIEXEC, "-n", str(args.ranks), sys.executable, "-m", "hpcsgd.train", str(job),
           f"--train.max_steps={args.steps}", f"--cluster.pin={str(pin).lower()}",
           f"--run.out_dir={out}", f"--run.name={name}"]
    tuner.wait_for_quiet(args.max_foreign, args.quiet_wait_s)
    busy0, own0, t0 = tuner.cpu_busy_s(), tuner.children_cpu_s(), time.monotonic()
    # cwd: the job's relative data path is relative to the checkout, as for the jobs/ scripts
    res = subprocess.run(cmd, cwd=ROOT, env=tuner.clean_env(), capture_output=True,
                         text=True, timeout=600)
    foreign = tuner.foreign_load(tuner.cpu_busy_s() - busy0, tuner.children_cpu_s() - own0,
                                 time.monotonic() - t0, os.cpu_count() or 1)
    if res.returncode != 0:
        print(res.stdout[-2000:], res.stderr[-2000:])
        return None
    rate = json.loads((out / name / "summary.json").read_text())["train_img_per_s"]
    print(f"  round {rnd + 1}: pin = {str(pin).lower():5s} {rate:8.0f} img/s, others used "
          f"{foreign:4.0%} of the CPUs", flush=True)
    return {"pin": pin, "rate": rate, "foreign": foreign}


def main(argv: list[str] | None = None, prog: str = "hpcsgd affinity") -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="plan|tune|compare")
    p = sub.add_parser("plan", help="the plan and launcher flags for a node",
                       description="The core plan of a node and the launcher flags that match it.")
    p.add_argument("--config", help="a job TOML: its [cluster] section decides")
    p.add_argument("--ranks", type=int, default=0,
                   help="ranks in total (over --nodes); default: the job's, see above")
    p.add_argument("--ranks-per-node", type=int, default=0, help="0 = the job's or the preset's")
    p.add_argument("--nodes", type=int, default=0, help="0 = cluster.nodes of the job, else 1")
    p.add_argument("--node-type", default="auto", choices=list(PRESETS),
                   help="without --config (default: auto, this node)")
    p.add_argument("--comm-cores", type=int, default=-1, help="per rank; -1 = the preset's rule")
    p.add_argument("--data-cores", type=int, default=0, help="per rank")
    p.add_argument("--threads", type=int, default=0, help="per rank; 0 = one per compute core")
    t = sub.add_parser("tune", help="measure candidate layouts on this node (a benchmark)",
                       description="Measure every candidate core layout on this node.")
    t.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    t.add_argument("--buckets", type=float, nargs="*", default=[4.0],
                   help="bucket sizes (MB) tried besides the default 25")
    t.add_argument("--rounds", type=int, default=1)
    t.add_argument("--model", default="resnet50")
    t.add_argument("--image-size", type=int, default=32)
    t.add_argument("--batch", type=int, default=24,
                   help="global batch, the same for every layout (divisible by every rank count)")
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--budget-s", type=float, default=20.0,
                   help="a layout's timed steps stop after this long (at least 2 steps)")
    t.add_argument("--results", default="docs/affinity_tune.jsonl")
    t.add_argument("--snippet", default="docs/affinity_best.toml")
    t.add_argument("--report-only", action="store_true", help="only summarise --results")
    t.add_argument("--only", help="measure only the layouts whose name contains this text "
                                  "(e.g. 'unpinned'); the table still uses every result")
    t.add_argument("--max-foreign", type=float, default=0.10,
                   help="runs during which other processes took more of the CPUs are left out")
    t.add_argument("--quiet-wait-s", type=float, default=90.0,
                   help="wait up to this long for other processes to go quiet before a run")
    c = sub.add_parser("compare", help="pinned vs unpinned training throughput (a benchmark)",
                       description="Training throughput with cluster.pin = true and false.")
    c.add_argument("--job", default="jobs/local/fashion_mnist.toml")
    c.add_argument("--ranks", type=int, default=2)
    c.add_argument("--steps", type=int, default=150)
    c.add_argument("--rounds", type=int, default=3)
    c.add_argument("--max-foreign", type=float, default=0.10)
    c.add_argument("--quiet-wait-s", type=float, default=90.0)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    from hpcsgd.config import ConfigError
    try:
        return {"plan": cmd_plan, "tune": cmd_tune, "compare": cmd_compare}[args.command](args)
    except (ConfigError, PlanError) as e:  # one line, as the trainer refuses it
        print(f"{prog} {args.command}: refused: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
