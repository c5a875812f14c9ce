"""Test the papers' large-batch claims with hpcsgd itself and write docs/results.md.

    .venv/bin/python -m tools.experiments --quick     # about 15 min on an idle 2-core machine
    .venv/bin/python -m tools.experiments             # the full set: about 6 h
    .venv/bin/python -m tools.experiments --plan [--quick]          # the runs; which have finished
    .venv/bin/python -m tools.experiments --report-only [--quick]   # report from finished runs

Every run is a real `mpiexec -n 4` job of the trainer (`python -m hpcsgd.train`, or
`python -m hpcsgd.lm.train` for the LSTM), configured by a base file in jobs/experiments/
plus command-line overrides, followed by one evaluation of its final weights on the test
split (`python -m hpcsgd.ensemble ... --snapshots final.pt`, kept as test_eval.json; the
LSTM's by `python -m hpcsgd.lm.score ... --snapshot final.pt`, with each sentence's NLL); claim
6 is one `python -m hpcsgd.collapsed_ensemble` command (cyclic run, collapse branches,
ensemble). Run folders: runs/experiments/<mode>/<run>/. Which runs, why and in what order:
tools/experiments/plan.py. A finished run (same command) is not run again, so an interrupted
set continues where it stopped; runs go one at a time in the plan's priority order, and the
plan is redone after each (a sweep's best value decides the runs that follow it). Then
tools/experiments/report.py reads the run folders and writes docs/results.md, claim by claim,
from whatever has finished.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

from hpcsgd.run.metrics import read_metrics

from .budget import lr_wd_sum, steps_of
from .plan import FULL, QUICK, RANKS, Mode, Run, plan, select_mode  # noqa: F401
from .report import provenance, write_report
from .verdicts import MIN_STEPS

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- results

def read_results(out_dir: Path, runs: list[Run]) -> dict:
    """name -> result of the runs finished with the same arguments: the trainer's summary
    (top1 = final *validation* top-1) + test_top1 (image runs) or the test perplexity and
    test_sentence_nll of hpcsgd.lm.score (LM runs), or the collapsed ensemble's
    collapsed_ensemble.json (claim 6)."""
    done = {}
    for run in runs:
        folder = out_dir / run.name
        spec = _spec(folder)
        if spec is None or spec.get("args") != run.args():
            continue
        made_by = {"provenance": spec.get("provenance", "")}  # the code that made the run
        if spec.get("earlier_provenance"):  # and a resumed run's earlier processes'
            made_by["earlier_provenance"] = spec["earlier_provenance"]
        if run.kind == "collapsed":
            path = folder / "collapsed_ensemble.json"
            if path.is_file():
                parts = [folder, *branch_folders(out_dir, run.name)]
                wall = sum(json.loads((p / "summary.json").read_text()).get("wall_time_s", 0.0)
                           for p in parts if (p / "summary.json").is_file())
                done[run.name] = {"collapsed": json.loads(path.read_text()),
                                  "wall_time_s": wall, **made_by}
            continue
        summary, test = folder / "summary.json", folder / "test_eval.json"
        if not summary.is_file() or (run.kind in SCORED and not test.is_file()):
            continue
        result = {**json.loads(summary.read_text()), **made_by}
        result["wall_time_s"] = wall_time_s(folder, result.get("wall_time_s", 0.0))
        if run.kind == "image":
            snap = json.loads(test.read_text())["snapshots"][0]
            result.update(test_top1=snap["top1"], test_top5=snap["top5"], test_count=snap["count"],
                          test_hits=snap.get("top1_hits"))  # per-image: since 2026-12-07
        elif run.kind == "lm":  # per-sentence: since 2026-12-07 (hpcsgd.lm.score)
            test = json.loads(test.read_text())  # the score's perplexity is test's, whatever
            result.update(perplexity=test["perplexity"], test_sentence_nll=test["sentence_nll"],
                          test_count=test["count"])  # split the trainer evaluated
        done[run.name] = result
    return done


def wall_time_s(folder: Path, summary_wall_s: float) -> float:
    """The run's wall time, every training process counted once. A resumed run's summary
    carries the wall time saved in the checkpoint it resumed from (hpcsgd.run.trainer), so it
    misses the earlier processes' work after that checkpoint, which was done again but spent;
    each process's records time it from its own start, so the run's time is the sum of each
    process's last record time (a killed process's time after its last record is lost)."""
    path = folder / "metrics.jsonl"
    lasts: list[float] = []
    for record in read_metrics(path) if path.is_file() else []:
        if record["tag"] == "start" or not lasts:
            lasts.append(0.0)
        lasts[-1] = max(lasts[-1], record.get("time", 0.0))
    return sum(lasts) if len(lasts) > 1 else summary_wall_s


def _spec(folder: Path) -> dict | None:
    path = folder / "experiment.json"
    return json.loads(path.read_text()) if path.is_file() else None


def branch_folders(out_dir: Path, name: str) -> list[Path]:
    """The collapse branches hpcsgd.collapsed_ensemble wrote for run `name`: <name>-c<k>."""
    pattern = re.compile(re.escape(name) + r"-c(\d+)")
    found = [p for p in out_dir.glob(f"{name}-c*") if pattern.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(pattern.fullmatch(p.name).group(1)))


def settle(mode: Mode, out_dir: Path) -> tuple[list[Run], dict]:
    """(runs, results) once planning with the finished runs plans nothing new: a sweep's
    extension and the runs after it depend on runs that were themselves planned from results."""
    results: dict = {}
    while True:
        runs = plan(mode, results)
        found = read_results(out_dir, runs)
        if found.keys() == results.keys():
            return runs, found
        results = found


# ---------------------------------------------------------------------------- running

RESUMABLE = ("image", "lm")
SCORED = ("image", "lm")  # training, then an evaluation of the final weights: test_eval.json
# A training run cut short (a session's end, a killed driver) goes on from its newest epoch
# checkpoint instead of starting again: resumes are exact, so the numbers are the uncut run's.
# Not part of Run.args(): finished runs keep matching their command.
CHECKPOINTS = ("--checkpoint.every_epochs=1", "--checkpoint.resume=auto")


def commands(run: Run, out_dir: Path, mpiexec: str, python: str) -> list[list[str]]:
    """The run's processes, in order."""
    where = [f"--run.out_dir={out_dir}", f"--run.name={run.name}"]
    mpi = [mpiexec, "-n", str(RANKS), python, "-m"]
    if run.kind == "collapsed":  # one command: it launches its own mpiexec jobs
        return [[python, "-m", "hpcsgd.collapsed_ensemble", run.config, *run.overrides, *where,
                 "--launcher", f"{mpiexec} -n {RANKS}", *run.tool_args]]
    if run.kind == "lm":  # the trainer evaluates test (nothing is tuned); the score keeps
        # each sentence's NLL for the paired comparison of the arms (claim 7's text noise)
        return [mpi + ["hpcsgd.lm.train", run.config, *run.overrides, *where, *CHECKPOINTS],
                mpi + ["hpcsgd.lm.score", run.config, *run.overrides, *where,
                       "--lm.eval_split=test", "--snapshot", str(out_dir / run.name / "final.pt")]]
    # the final weights once on test: the split no choice was made on
    return [mpi + ["hpcsgd.train", run.config, *run.overrides, *where, *CHECKPOINTS],
            mpi + ["hpcsgd.ensemble", run.config, *run.overrides, *where,
                   "--data.eval_split=test", "--snapshots", str(out_dir / run.name / "final.pt")]]


def execute(run: Run, out_dir: Path, *, mpiexec: str, python: str, log) -> bool:
    """Run one experiment. Its old folder is removed first, except when the same arguments
    left it unfinished: a training run with a checkpoint resumes from it (metrics.jsonl then
    holds the steps after the checkpoint twice; plots.records keeps the later ones), a
    finished training run only evaluates on test, and the collapsed ensemble tool skips the
    steps it has finished. Other arguments also remove the old collapse branches."""
    folder = out_dir / run.name
    old = _spec(folder)
    same = old is not None and old.get("args") == run.args()
    cut_short = run.kind in RESUMABLE and any((folder / "checkpoints").glob("*.pt"))
    # cut during the test evaluation: training wrote summary.json after final.pt, and its last
    # epoch has no checkpoint (final.pt stands for it), so only the evaluation runs again
    trained = same and run.kind in SCORED and all(
        (folder / f).is_file() for f in ("final.pt", "summary.json"))
    kept = same and (run.kind == "collapsed" or cut_short or trained)
    if not kept:
        for path in [folder, *branch_folders(out_dir, run.name)]:
            shutil.rmtree(path, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": run.name, "kind": run.kind, "args": run.args(), "provenance": provenance()}
    # a kept run was made by the code of its earlier processes too
    earlier = [*old.get("earlier_provenance", []), old.get("provenance", "")] if kept else []
    earlier = [p for p in dict.fromkeys(earlier) if p and p != spec["provenance"]]
    if earlier:
        spec["earlier_provenance"] = earlier
    (folder / "experiment.json").write_text(json.dumps(spec, indent=2))
    with open(folder / "stdout.log", "a") as out:
        for cmd in commands(run, out_dir, mpiexec, python)[1 if trained else 0:]:
            log("  " + " ".join(cmd[cmd.index("-m") + 1:]))
            code = subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            if code != 0:
                log(f"  FAILED (exit {code}); see {folder / 'stdout.log'}")
                return False
    if run.kind == "image":  # hpcsgd.ensemble's file name is the collapsed ensemble's too
        (folder / "ensemble.json").replace(folder / "test_eval.json")
    return True


def run_all(mode: Mode, out_dir: Path, *, mpiexec: str, python: str, log=print) -> dict:
    """Run what is missing, one run at a time in priority order, planning again after each
    (a finished sweep plans its follow-ups). Returns name -> result; failed runs are left out
    (the report names them)."""
    failed: set[str] = set()
    while True:
        runs, results = settle(mode, out_dir)
        todo = [r for r in runs if r.name not in results and r.name not in failed]
        if not todo:
            return results
        left = sum(r.estimate_s for r in todo)
        log(f"[{mode.name}] {len(todo)} runs planned to go (about {left / 60:.0f} min on an "
            f"idle machine; a finished sweep may plan more): {todo[0].name}")
        t0 = time.time()
        if execute(todo[0], out_dir, mpiexec=mpiexec, python=python, log=log):
            log(f"  done in {time.time() - t0:.0f} s")
        else:
            failed.add(todo[0].name)


# ---------------------------------------------------------------------------- --plan

def simulated_plan(mode: Mode, finished: dict | None = None) -> tuple[list[Run], set[str]]:
    """The whole set as it will be once every sweep has finished with no extension beyond
    those its `finished` runs (name -> result) already call for, and the names plannable now."""
    finished = finished or {}
    now = {r.name for r in plan(mode, finished)}
    results: dict = dict(finished)
    while True:
        runs = plan(mode, results)
        # a sweep's unfinished runs lose to its finished ones (the plan already holds any
        # extension those called for), the middle value first among them
        fake = {r.name: finished.get(r.name, {"top1": -9.0 - abs(math.log(r.value)) if r.tune
                                              else 0.0}) for r in runs}
        if fake.keys() == results.keys():
            return runs, now
        results = fake


def print_plan(mode: Mode, out_dir: Path | None = None) -> None:
    """The runs and their estimates; with the run folders of an interrupted set, which have
    finished and how long the rest will take."""
    finished = settle(mode, out_dir)[1] if out_dir is not None and out_dir.is_dir() else {}
    runs, now = simulated_plan(mode, finished)
    for r in runs:
        later = ("   (finished)" if r.name in finished else "" if r.name in now
                 else "   (planned once its sweep has finished)")
        print(f"{r.estimate_s / 60:6.1f} min  {r.name}{later}")
    print("\nby claim group:")
    for group in dict.fromkeys(r.experiment for r in runs):
        part = [r for r in runs if r.experiment == group]
        print(f"  {group:9s} {len(part):3d} runs  {sum(r.estimate_s for r in part) / 3600:5.2f} h")
    for group in ("bn", "nobn", "date"):
        part = [r for r in runs if r.experiment == group and r.kind == "image"]
        if part:
            big = max(part, key=lambda r: (r.batch not in mode.stress, r.batch))
            print(f"  {group}: {steps_of(big)} optimizer steps at batch {big.batch} "
                  f"(at least {MIN_STEPS} wanted)")
    for r in runs:
        if r.experiment == "collapse" and r.seed == 0:  # the same for every seed
            print(f"  {r.name}: sum over steps of LR x weight decay = {lr_wd_sum(r):.2f}")
    todo = [r for r in runs if r.name not in finished]
    left, whole = (sum(r.estimate_s for r in part) / 3600 for part in (todo, runs))
    print(f"{len(todo)} of {len(runs)} runs to go; about {left:.1f} h on an idle 2-core machine "
          f"(the whole set: {whole:.1f} h; {len(now)} runs plannable now), plus any sweep "
          "extension (a best value at the edge of its grid).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.experiments", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the ~15-minute set")
    p.add_argument("--plan", action="store_true",
                   help="list the runs (those finished in --out-dir marked) and the time\n"
                        "the rest will take; run nothing")
    p.add_argument("--report-only", action="store_true", help="report the finished runs only")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="run folders (default runs/experiments/<mode>)")
    p.add_argument("--docs", type=Path, default=ROOT / "docs", help="where results.md goes")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds of claims 1-4 and 7 (default: the set's, 1); the other seeds run "
                        "after the one-seed set,\nwhose runs are kept (full set: ~3.5 h a seed)")
    p.add_argument("--bn-curve", action="store_true",
                   help="linear scaling on the BN network at the batches between B0 and the\n"
                        "largest too (seed 0), after the rest (full set: 512 and 1024, ~1.3 h)")
    p.add_argument("--collapse-seeds", type=int, default=None,
                   help="seeds of claim 5, its three arms paired by seed (default 1); the\n"
                        "others run last (full set: ~52 min a seed)")
    p.add_argument("--cyclic-seeds", type=int, default=None,
                   help="seeds of claim 6, each the whole procedure (default 1); the others\n"
                        "run after --bn-curve's, before claim 5's (full set: ~9 min a seed)")
    p.add_argument("--lm-full-text", action="store_true",
                   help="claim 7 again on PTB's whole training text (every seed), last;\n"
                        "it is then judged on those runs (full set: ~1.8 h a seed)")
    args = p.parse_args(argv)
    try:
        mode = select_mode(args.quick, args.seeds, args.bn_curve, args.collapse_seeds,
                           args.cyclic_seeds, args.lm_full_text)
    except ValueError as e:
        p.error(str(e))
    out_dir = (args.out_dir or ROOT / "runs" / "experiments" / mode.name).resolve()
    if args.plan:
        print_plan(mode, out_dir)
        return 0
    venv = ROOT / ".venv" / "bin"
    if not args.report_only:
        subprocess.check_call([str(ROOT / "tools" / "setup.sh")])
        subprocess.check_call([str(venv / "hpcsgd"), "convert", "fashion-mnist",
                               "--out", str(ROOT / "data" / "fashion-mnist")])
        t0 = time.time()
        run_all(mode, out_dir, mpiexec=str(venv / "mpiexec"), python=str(venv / "python"),
                log=lambda line: print(line, flush=True))
        print(f"[{mode.name}] all runs finished in {(time.time() - t0) / 60:.1f} min")
    runs, results = settle(mode, out_dir)
    path = write_report(mode, runs, results, out_dir, args.docs)
    print(f"wrote {path}")
    return 0

