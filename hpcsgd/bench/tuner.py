"""The affinity tuner: candidate layouts, each measured by a short step benchmark, ranked.

A layout is a number of ranks on this node and a set of config options (cluster.pin,
compute.threads, cluster.comm_cores_per_rank, comm.bucket_mb); each runs as its own
`mpiexec -n R python -m hpcsgd.bench.stepbench` (hpcsgd/bench/stepbench.py), at the
same global batch, so step times compare across rank counts. Results are appended to a JSON
lines file, one line per run, so that rounds run at different times (each under the
benchmark lock) accumulate; a candidate's step time is the median over its rounds. The
layout the trainer uses when nothing is set (options ()) is marked "default" and compared
with the best layout of the same rank count.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hpcsgd.affinity.planner import format_table

DEFAULT_BUCKET_MB = 25.0  # hpcsgd.config.CommConfig.bucket_mb


@dataclass(frozen=True)
class Candidate:
    ranks: int
    name: str
    options: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    """Environment set before the ranks start (OpenMP reads it when it loads)."""

    @property
    def key(self) -> str:
        return f"{self.ranks} x {self.name}"

    @property
    def default(self) -> bool:
        return not self.options and not self.env


def candidates(cores: int, ranks=(1, 2, 3, 4), buckets=(4.0,)) -> list[Candidate]:
    """Layouts for 1..N ranks on `cores` cores: the default (no option set), the plan pinned
    with each thread count the rank's share allows, the same with OpenMP threads that sleep
    instead of spinning when idle (OMP_WAIT_POLICY=passive), the OS's placement (unpinned) with each thread count up to 2 threads per core,
    a dedicated communication core, and other bucket sizes."""
    out = []
    for r in ranks:
        share = cores // r  # cores per rank (0: more ranks than cores)
        out.append(Candidate(r, "default"))
        for t in range(1, share + 1):
            out.append(Candidate(r, f"pinned, {t} thread(s)", (f"--compute.threads={t}",)))
        if share >= 2:
            # idle OpenMP threads sleep instead of spinning (set before the ranks start)
            out.append(Candidate(r, f"pinned, {share} threads, OMP_WAIT_POLICY=passive",
                                 (f"--compute.threads={share}",),
                                 (("OMP_WAIT_POLICY", "PASSIVE"),)))
            out.append(Candidate(r, f"pinned, 1 dedicated comm core + {share - 1} compute",
                                 ("--cluster.comm_cores_per_rank=1",)))
        for t in range(1, cores + 1):
            if t * r <= 2 * cores:
                out.append(Candidate(r, f"unpinned, {t} thread(s)",
                                     ("--cluster.pin=false", f"--compute.threads={t}")))
        for b in buckets:
            if b != DEFAULT_BUCKET_MB:
                out.append(Candidate(r, f"default, {b:g} MB buckets", (f"--comm.bucket_mb={b:g}",)))
    return out


def bench_command(c: Candidate, workload: list[str], *, mpiexec: str,
                  python: str = sys.executable) -> list[str]:
    return [mpiexec, "-n", str(c.ranks), python, "-m", "hpcsgd.bench.stepbench",
            *workload, *c.options]


def clean_env() -> dict[str, str]:
    """This process's environment without a launcher's variables (a fresh mpiexec must not
    think it runs inside another job) and without OpenMP placement (the layout decides)."""
    drop = ("PMI_", "PMIX_", "MPI", "HYDRA", "OMPI_", "PRTE_", "I_MPI_", "SLURM_",
            "HPCSGD_EXPECT", "OMP_", "KMP_", "GOMP_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def cpu_busy_s(stat: str | None = None) -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat's "cpu" line: everything but
    idle and iowait)."""
    if stat is None:
        stat = Path("/proc/stat").read_text()
    fields = [int(x) for x in stat.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user time
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this process's finished descendants (mpiexec waits for its ranks)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def foreign_load(busy_s: float, own_s: float, wall_s: float, cpus: int) -> float:
    """The fraction of the node's CPU time used by other processes meanwhile (0: the
    benchmark had the node to itself)."""
    return max(0.0, busy_s - own_s) / max(wall_s * cpus, 1e-9)


def wait_for_quiet(threshold: float, timeout_s: float, sample_s: float = 1.0) -> float:
    """Sample other processes' CPU use until it is below `threshold` (or `timeout_s` passed);
    returns the last sample. Nothing of ours runs meanwhile, so all of it is foreign."""
    cpus = os.cpu_count() or 1
    deadline = time.monotonic() + timeout_s
    while True:
        b0, t0 = cpu_busy_s(), time.monotonic()
        time.sleep(sample_s)
        load = foreign_load(cpu_busy_s() - b0, 0.0, time.monotonic() - t0, cpus)
        if load < threshold or time.monotonic() > deadline:
            return load


def run_candidate(c: Candidate, workload: list[str], *, mpiexec: str, cwd: str | Path,
                  timeout: float = 600.0) -> dict:
    """One measurement: the benchmark's JSON line plus the candidate, or the error; with
    `foreign`, the share of the node's CPU time other processes took during the run."""
    record = {"key": c.key, "ranks": c.ranks, "name": c.name, "options": list(c.options),
              "env": dict(c.env), "default": c.default, "workload": workload,
              "time": time.time(), "loadavg": _loadavg()}
    busy0, own0, t0 = cpu_busy_s(), children_cpu_s(), time.monotonic()
    try:
        res = subprocess.run(bench_command(c, workload, mpiexec=mpiexec), cwd=cwd,
                             env={**clean_env(), **dict(c.env)}, capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**record, "ok": False, "error": f"timed out after {timeout:.0f} s"}
    except OSError as e:
        return {**record, "ok": False, "error": f"cannot start {mpiexec}: {e.strerror}"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return {**record, "ok": False, "error": f"exit {res.returncode}: {' | '.join(tail)}"}
    record["foreign"] = foreign_load(cpu_busy_s() - busy0, children_cpu_s() - own0,
                                     time.monotonic() - t0, os.cpu_count() or 1)
    return {**record, "ok": True, **json.loads(lines[-1])}


def _loadavg() -> float | None:
    """The 1-minute load average when the run starts (other jobs sharing the cores)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def load_results(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(results: list[dict], workload: list[str] | None = None,
              max_foreign: float | None = None) -> list[dict]:
    """One row per candidate (of `workload`, if given), ranked fastest first: step_s, the
    median of every timed step of every round (other processes only ever add time, and a
    pooled median is not moved by one disturbed round); fastest_s, the fastest step; and the
    lowest and highest of the rounds' own medians (min_s, max_s: the round-to-round spread).
    max_foreign: only runs during which other processes took at most this share of the node's
    CPU time (runs without the measurement are then left out too)."""
    by_key: dict[str, list[dict]] = {}
    for r in results:
        quiet = max_foreign is None or r.get("foreign", 1.0) <= max_foreign
        if r.get("ok") and quiet and (workload is None or r["workload"] == workload):
            by_key.setdefault(r["key"], []).append(r)
    rows = []
    for key, runs in by_key.items():
        rounds = [r["step_s"] for r in runs]
        pooled = [t for r in runs for t in r.get("times", [r["step_s"]])]
        first = runs[0]
        rows.append({"key": key, "ranks": first["ranks"], "name": first["name"],
                     "options": first["options"], "env": first.get("env", {}),
                     "default": first["default"],
                     "threads": first["threads"], "step_s": statistics.median(pooled),
                     "fastest_s": min(pooled), "min_s": min(rounds), "max_s": max(rounds),
                     "rounds": len(rounds), "steps": len(pooled),
                     "batch": _batch(first["workload"])})
    rows.sort(key=lambda row: row["step_s"])
    return rows


def _batch(workload: list[str]) -> int:
    for i, arg in enumerate(workload):
        if arg == "--batch":
            return int(workload[i + 1])
    raise ValueError(f"workload {workload} has no --batch")


def ranked_table(rows: list[dict]) -> str:
    best = rows[0]["step_s"] if rows else 1.0
    body = [[str(i + 1), str(r["ranks"]), r["name"] + (" *" if r["default"] else ""),
             str(r["threads"]), f"{r['step_s'] * 1e3:.0f}", f"{r['fastest_s'] * 1e3:.0f}",
             f"{r['min_s'] * 1e3:.0f}-{r['max_s'] * 1e3:.0f}", f"{r['rounds']}/{r['steps']}",
             f"{r['batch'] / r['step_s']:.1f}", f"{r['step_s'] / best:.3f}"]
            for i, r in enumerate(rows)]
    return format_table(["#", "ranks", "layout (* = default)", "threads/rank",
                         "median step ms", "fastest ms", "round medians ms", "rounds/steps",
                         "img/s", "vs best"], body)


def default_vs_best(rows: list[dict]) -> list[dict]:
    """Per rank count: the default layout's step time over the best layout's."""
    out = []
    for ranks in sorted({r["ranks"] for r in rows}):
        mine = [r for r in rows if r["ranks"] == ranks]
        best = min(mine, key=lambda r: r["step_s"])
        default = [r for r in mine if r["default"]]
        if default:
            out.append({"ranks": ranks, "default_s": default[0]["step_s"],
                        "best_s": best["step_s"], "best": best["name"],
                        "ratio": default[0]["step_s"] / best["step_s"]})
    return out


def _toml_value(text: str) -> str:
    """A CLI value as TOML: as it is when it is a TOML value (1, 4.0, false), else quoted."""
    try:
        tomllib.loads(f"v = {text}")
        return text
    except tomllib.TOMLDecodeError:
        return json.dumps(text)


def snippet(best: dict, command: str) -> str:
    """The best layout as a TOML fragment that load_config accepts (hpcsgd.config)."""
    values = {"cluster": {"ranks_per_node": best["ranks"]}, "compute": {}, "comm": {}}
    for opt in best["options"]:
        option, _, text = opt[2:].partition("=")
        section, _, key = option.partition(".")
        values.setdefault(section, {})[key] = _toml_value(text)
    lines = [f"# Best core layout measured by: {command}",
             f"# {best['ranks']} rank(s) x {best['name']}: {best['step_s'] * 1e3:.0f} ms per "
             f"step of {best['batch']} images (median of {best['rounds']} round(s))",
             f"# launch: " + "".join(f"{k}={v} " for k, v in best.get("env", {}).items())
             + f"mpiexec -n {best['ranks']} .venv/bin/python -m hpcsgd.train JOB.toml"]
    for section, keys in values.items():
        if keys:
            lines.append(f"[{section}]")
            lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"
