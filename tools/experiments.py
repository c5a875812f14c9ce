#!/usr/bin/env python3
"""Reproduce the papers' large-batch claims with hpcsgd itself and write docs/results.md.

    .venv/bin/python tools/experiments.py --quick     # about 15 min on an idle 2-core machine
    .venv/bin/python tools/experiments.py             # the full set: several hours
    .venv/bin/python tools/experiments.py --plan [--quick]          # list the runs only
    .venv/bin/python tools/experiments.py --report-only [--quick]   # report from finished runs

Every run is a real `mpiexec -n 4` job of the trainer (`python -m hpcsgd.train`, or
`python -m hpcsgd.lm.train` for the LSTM), configured by a base file in jobs/experiments/
plus command-line overrides; its folder is runs/experiments/<mode>/<run>/. A finished run
(summary.json written for the same command) is not run again, so an interrupted full set
continues where it stopped. Then tools/experiments_report.py reads the run folders and writes
docs/results.md (and docs/results_*.png), claim by claim.

The experiments (Fashion-MNIST: 60,000 training images, batches from B0 = 128 up to 4096 in
quick mode or 8192 in the full set; the same number of epochs at every batch):
  scaling   (1) baseline at B0; (2) Goyal: linear LR scaling + warmup; (3) You et al.: LARS +
            warmup + poly power 2; (4) DATE: sqrt scaling + LEGW + roller coaster + bounded
            ratio, from the baseline's B0, lr0, w0, never retuned.
  collapse  (5) Codreanu Table VIII: standard weight decay / half / half + final collapse.
  cyclic    (6) Codreanu Table XI: snapshots of the cyclic schedule and their ensemble.
  lstm      DATE's PTB claim: a 2-layer LSTM at B0 = 20 streams and at 32 x B0.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from experiments_report import provenance, write_report  # noqa: E402
from experiments_sweep import SWEEP_EXTENSIONS, best_gamma, edge_extension, run_gamma  # noqa: E402

LENET, RESNET, LSTM = ("jobs/experiments/fmnist_lenet.toml", "jobs/experiments/fmnist_resnet20.toml",
                       "jobs/experiments/ptb_lstm.toml")
B0, LR0, LM_B0, LM_LR0 = 128, 0.05, 20, 20.0  # LM_LR0: jobs/experiments/ptb_lstm.toml
TRAIN_IMAGES, PTB_TOKENS = 60000, 929589
# Rough throughputs of 4 ranks on the idle 2-core machine, for --plan's time estimate only.
SPEED = {"lenet": 6000.0, "cifar_resnet20": 800.0}  # images/s
LM_SPEED = 12000.0  # tokens/s (hidden 200); ~3x that at hidden 64
OVERHEAD_S = 10.0  # mpiexec start, imports, final checkpoint per run


@dataclass(frozen=True)
class Mode:
    name: str
    epochs: float              # LeNet epochs, every batch size (scaling, collapse)
    batches: tuple[int, ...]   # first = B0
    seeds: int
    lars_sweep: tuple[float, ...]  # multiples of the rule's gamma tried at seed 0
    collapse_model: str
    collapse_batch: int
    collapse_epochs: float
    collapse_seeds: int
    cyclic_epochs: float
    cyclic_batch: int
    lm_epochs: float
    lm_hidden: int
    lm_fraction: float
    lm_batches: tuple[int, ...]


QUICK = Mode("quick", epochs=4.0, batches=(128, 1024, 4096), seeds=1, lars_sweep=(1.0,),
             collapse_model="lenet", collapse_batch=1024, collapse_epochs=4.0, collapse_seeds=1,
             cyclic_epochs=6.0, cyclic_batch=1024, lm_epochs=3.0, lm_hidden=64,
             lm_fraction=0.2, lm_batches=(20, 160))
FULL = Mode("full", epochs=20.0, batches=(128, 512, 2048, 8192), seeds=3,
            lars_sweep=(0.5, 1.0, 2.0), collapse_model="cifar_resnet20", collapse_batch=1024,
            collapse_epochs=8.0, collapse_seeds=3, cyclic_epochs=30.0, cyclic_batch=1024,
            lm_epochs=6.0, lm_hidden=200, lm_fraction=1.0, lm_batches=(20, 640))
MODES = {"quick": QUICK, "full": FULL}


@dataclass(frozen=True)
class Run:
    name: str
    experiment: str            # scaling / collapse / cyclic / lstm
    method: str                # baseline, goyal, lars, date, wd_full, ... (the report's rows)
    batch: int
    seed: int
    config: str
    overrides: tuple[str, ...]
    entry: str = "hpcsgd.train"
    ensemble: bool = False     # evaluate the snapshots and their ensemble afterwards
    tune: str = ""             # runs sharing a tune key are a sweep; the report keeps the best
    estimate_s: float = field(default=0.0, compare=False)

    def command(self, out_dir: Path, mpiexec: str, python: str) -> list[str]:
        return [mpiexec, "-n", "4", python, "-m", self.entry, self.config, *self.overrides,
                f"--run.out_dir={out_dir}", f"--run.name={self.name}"]


# ---------------------------------------------------------------------------- recipes

def warmup_w0(mode: Mode) -> float:
    """The baseline's warmup w0 (epochs at B0): LEGW stretches it x B/B0, so w0 is chosen for
    the largest batch to warm up over half the run, as in DATE's LeNet example (16 of 30)."""
    return 0.5 * mode.epochs * B0 / max(mode.batches)


def goyal_warmup(epochs: float) -> float:
    """Goyal et al.'s 5 of 90 epochs, as the same fraction of our run."""
    return epochs * 5.0 / 90.0


def lars_gamma(batch: int) -> float:
    """LARS's global LR gamma by rule: 4 at B0, x sqrt(B/B0) (You et al. Table 5 grew gamma
    5 -> 10 -> 14 for 512 -> 4K -> 8K; they tune gamma, as the full set's sweep does)."""
    return 4.0 * math.sqrt(batch / B0)


def scaling_overrides(method: str, batch: int, mode: Mode, gamma: float = 0.0) -> list[str]:
    e, w0 = mode.epochs, warmup_w0(mode)
    common = [f"--train.epochs={e}", f"--train.global_batch={batch}",
              f"--schedule.base_batch={B0}", f"--optim.base_lr={LR0}"]
    if method == "baseline":
        return common + [f"--schedule.warmup_epochs={w0}"]
    if method == "goyal":  # linear scaling, gradual warmup from lr0 to k lr0, baseline's decay
        return common + ["--schedule.lr_scaling=linear",
                         f"--schedule.warmup_epochs={max(w0, goyal_warmup(e))}",
                         f"--schedule.warmup_start_lr={LR0}"]
    if method == "lars":  # You et al.: LARS eta 0.001, warmup, poly power 2, gamma tuned
        return common[:3] + ["--optim.name=lars", f"--optim.base_lr={gamma}",
                             "--optim.lars_eta=0.001", f"--schedule.warmup_epochs={goyal_warmup(e)}",
                             "--schedule.power=2.0"]
    if method == "date":  # DATE Algorithm 1 from (B0, lr0, w0); eta0 = lr0 / upper bound
        return common[:3] + ["--optim.date=true", "--optim.date_lower=0.1",
                             "--optim.date_upper=10.0", f"--optim.base_lr={LR0 / 10.0}",
                             "--schedule.lr_scaling=sqrt", "--schedule.legw=true",
                             f"--schedule.warmup_epochs={w0}", "--schedule.decay=roller_coaster"]
    raise ValueError(f"unknown scaling method {method!r}")


def scaling_runs(mode: Mode, results: dict) -> list[Run]:
    """Experiments 1-4. LARS: seed 0 sweeps gamma; the other seeds use the best of the sweep
    (known once the sweep has finished: `results` maps run name -> summary)."""
    runs = []
    for seed in range(mode.seeds):
        for batch in mode.batches:
            methods = ["baseline"] if batch == B0 else ["goyal"]
            for method in methods + ["lars", "date"]:
                if method != "lars":
                    runs.append(_scaling_run(method, batch, seed, mode))
                    continue
                key = f"lars-b{batch}"
                if seed == 0:
                    runs += lars_sweep(batch, mode, results, key)
                else:
                    best = best_of_sweep(runs, results, key)
                    if best is not None:
                        runs.append(_scaling_run("lars", batch, seed, mode, best))
    return runs


def lars_sweep(batch: int, mode: Mode, results: dict, key: str) -> list[Run]:
    """Seed 0's gamma sweep at `batch`: the rule's gamma x mode.lars_sweep, then, once those
    have finished, extended while the best is at an edge (experiments_sweep)."""
    gammas = [lars_gamma(batch) * f for f in mode.lars_sweep]
    tune = key if len(gammas) > 1 else ""
    sweep = [_scaling_run("lars", batch, 0, mode, g, tune=tune) for g in gammas]
    for _ in range(SWEEP_EXTENSIONS if tune else 0):
        if any(r.name not in results for r in sweep):
            break  # the next step depends on these
        step = edge_extension(gammas, [results[r.name]["top1"] for r in sweep])
        if step is None:
            break
        gammas.append(step)
        sweep.append(_scaling_run("lars", batch, 0, mode, step, tune=tune))
    return sweep


def _scaling_run(method, batch, seed, mode, gamma=0.0, tune="") -> Run:
    tag = f"-g{gamma:g}" if method == "lars" else ""
    over = scaling_overrides(method, batch, mode, gamma) + [f"--train.seed={seed}"]
    return Run(f"scaling-{method}-b{batch}{tag}-s{seed}", "scaling", method, batch, seed,
               LENET, tuple(over), tune=tune, estimate_s=_estimate("lenet", mode.epochs))


def best_of_sweep(runs: list[Run], results: dict, key: str) -> float | None:
    """Gamma of the best finished sweep run (None until every sweep run has finished,
    extensions included: an extension is planned only once the runs before it finished)."""
    sweep = [r for r in runs if r.tune == key]
    if not sweep:  # no sweep: the rule's gamma
        return lars_gamma(int(key.split("-b")[1]))
    if any(r.name not in results for r in sweep):
        return None
    return best_gamma([run_gamma(r) for r in sweep], [results[r.name]["top1"] for r in sweep])


def large_batch_rule(model: str) -> str:
    """LR rule of the collapse and cyclic runs, which test weight decay and cycles, not LR
    scaling: Goyal's linear rule for the BatchNorm ResNet; none for LeNet (no BatchNorm), whose
    loss became NaN at batch 1024 with the linear (0.4) and the sqrt (0.141) rule, and even at
    lr0 = 0.05 when the warmup started at lr0 rather than 0 (measured here). Both warm up
    gradually from 0."""
    return "linear" if model == "cifar_resnet20" else "none"


def collapse_runs(mode: Mode) -> list[Run]:
    """Codreanu Table VIII at a large batch: the standard weight decay; half of it; half of
    it + a final collapse over the last 7% (power-2 LR, weight decay x2 back to the standard
    value)."""
    resnet = mode.collapse_model == "cifar_resnet20"
    base, wd, lr0 = (RESNET, 1e-4, 0.1) if resnet else (LENET, 5e-4, LR0)
    e, batch = mode.collapse_epochs, mode.collapse_batch
    common = [f"--train.epochs={e}", f"--train.global_batch={batch}",
              f"--schedule.lr_scaling={large_batch_rule(mode.collapse_model)}",
              f"--schedule.base_batch={B0}", f"--optim.base_lr={lr0}",
              f"--schedule.warmup_epochs={goyal_warmup(e)}", "--schedule.warmup_start_lr=0.0"]
    variants = {"wd_full": [f"--optim.weight_decay={wd}"],
                "wd_half": [f"--optim.weight_decay={wd / 2}"],
                "wd_half_collapse": [f"--optim.weight_decay={wd / 2}",
                                     "--schedule.collapse_fraction=0.07",
                                     "--schedule.collapse_wd_factor=2.0"]}
    return [Run(f"collapse-{name}-s{seed}", "collapse", name, batch, seed, base,
                tuple(common + extra + [f"--train.seed={seed}"]),
                estimate_s=_estimate(mode.collapse_model, e))
            for seed in range(mode.collapse_seeds) for name, extra in variants.items()]


def cyclic_runs(mode: Mode) -> list[Run]:
    """Codreanu VI's cyclic schedule compressed from 120 to `cyclic_epochs` epochs (same
    proportions: linear decay to 1/4, power decay to 3/8, then 5 cycles of 1/40 re-warm +
    1/10 decay); the snapshots are the 5 cycle ends, the models Table XI ensembles (2c-6c)."""
    e = mode.cyclic_epochs
    s = e / 120.0
    over = [f"--train.epochs={e}", f"--train.global_batch={mode.cyclic_batch}",
            f"--schedule.lr_scaling={large_batch_rule('lenet')}", f"--schedule.base_batch={B0}",
            f"--optim.base_lr={LR0}", f"--schedule.warmup_epochs={goyal_warmup(e)}",
            "--schedule.warmup_start_lr=0.0", "--schedule.decay=cyclic", f"--schedule.cyclic_linear_until={30 * s:g}",
            f"--schedule.cyclic_start={45 * s:g}", f"--schedule.cyclic_rewarm_epochs={3 * s:g}",
            f"--schedule.cyclic_decay_epochs={12 * s:g}", "--schedule.cyclic_snapshot_start=false",
            f"--train.eval_every_epochs={15 * s:g}", "--train.seed=0"]
    return [Run("cyclic-s0", "cyclic", "cyclic", mode.cyclic_batch, 0, LENET, tuple(over),
                ensemble=True, estimate_s=_estimate("lenet", e) + 15)]


def lstm_runs(mode: Mode) -> list[Run]:
    """DATE's PTB claim: baseline (plain SGD, Zaremba's LR and clipping, B0 = 20 streams) and, at k x B0,
    linear scaling + warmup against DATE (sqrt, LEGW, roller coaster, bounded ratio) with the
    baseline's numbers, untouched."""
    big = max(mode.lm_batches)
    e, w0 = mode.lm_epochs, 0.5 * mode.lm_epochs * LM_B0 / big
    common = [f"--train.epochs={e}", f"--lm.hidden={mode.lm_hidden}",
              f"--lm.train_fraction={mode.lm_fraction}", f"--schedule.base_batch={LM_B0}"]
    recipes = {"baseline": (LM_B0, [f"--schedule.warmup_epochs={w0}"]),
               "goyal": (big, ["--schedule.lr_scaling=linear",
                               f"--schedule.warmup_epochs={goyal_warmup(e)}",
                               f"--schedule.warmup_start_lr={LM_LR0}"]),
               "date": (big, ["--optim.date=true", "--optim.date_lower=0.1",
                              "--optim.date_upper=10.0", f"--optim.base_lr={LM_LR0 / 10}",
                              "--schedule.lr_scaling=sqrt", "--schedule.legw=true",
                              f"--schedule.warmup_epochs={w0}", "--schedule.decay=roller_coaster"])}
    tokens = PTB_TOKENS * mode.lm_fraction * e
    speed = LM_SPEED * (3 if mode.lm_hidden <= 64 else 1)

    def estimate(batch: int) -> float:  # + per step: the allreduce of the 10k x hidden layers
        steps = tokens / (batch * 20)
        return tokens / speed + steps * 0.03 * mode.lm_hidden / 200 + OVERHEAD_S + 5 * e
    return [Run(f"lstm-{m}-b{b}-s0", "lstm", m, b, 0, LSTM,
                tuple(common + extra + [f"--train.global_batch={b}", "--train.seed=0"]),
                entry="hpcsgd.lm.train", estimate_s=estimate(b))
            for m, (b, extra) in recipes.items()]


def _estimate(model: str, epochs: float) -> float:
    return epochs * (TRAIN_IMAGES / SPEED[model] + 1.0) + OVERHEAD_S


def plan(mode: Mode, results: dict) -> list[Run]:
    """Every run of the mode that can be planned given the finished `results`."""
    return scaling_runs(mode, results) + collapse_runs(mode) + cyclic_runs(mode) + lstm_runs(mode)


def settle(mode: Mode, out_dir: Path) -> tuple[list[Run], dict]:
    """(runs, results) once planning with the finished runs plans nothing new: a sweep's
    extension and its seeds depend on runs that were themselves planned from results."""
    results: dict = {}
    while True:
        runs = plan(mode, results)
        found = read_results(out_dir, runs)
        if found.keys() == results.keys():
            return runs, found
        results = found


# ---------------------------------------------------------------------------- running

def read_results(out_dir: Path, runs: list[Run]) -> dict:
    """name -> summary (+ ensemble) of the runs finished with the same command line."""
    done = {}
    for run in runs:
        folder = out_dir / run.name
        summary, spec = folder / "summary.json", folder / "experiment.json"
        if not (summary.is_file() and spec.is_file()):
            continue
        spec = json.loads(spec.read_text())
        if spec.get("overrides") != list(run.overrides):
            continue
        result = {**json.loads(summary.read_text()), "provenance": spec.get("provenance", "")}
        if run.ensemble:
            ens = folder / "ensemble.json"
            if not ens.is_file():
                continue
            result["ensemble"] = json.loads(ens.read_text())
        done[run.name] = result
    return done


def execute(run: Run, out_dir: Path, *, mpiexec: str, python: str, log) -> bool:
    """Run one experiment from scratch (its old folder removed: metrics.jsonl appends)."""
    folder = out_dir / run.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps(
        {"name": run.name, "entry": run.entry, "config": run.config,
         "overrides": list(run.overrides), "provenance": provenance()}, indent=2))
    steps = [run.command(out_dir, mpiexec, python)]
    if run.ensemble:
        steps.append([mpiexec, "-n", "4", python, "-m", "hpcsgd.ensemble", run.config,
                      *run.overrides, f"--run.out_dir={out_dir}", f"--run.name={run.name}"])
    with open(folder / "stdout.log", "w") as out:
        for cmd in steps:
            log(" ".join(cmd[4:]))
            code = subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            if code != 0:
                log(f"  FAILED (exit {code}); see {folder / 'stdout.log'}")
                return False
    return True


def run_all(mode: Mode, out_dir: Path, *, mpiexec: str, python: str, log=print) -> dict:
    """Run what is missing until the plan is complete (a sweep's follow-ups are planned once
    the sweep is done). Returns name -> result; failed runs are left out (reported)."""
    failed: set[str] = set()
    while True:
        runs, results = settle(mode, out_dir)
        todo = [r for r in runs if r.name not in results and r.name not in failed]
        if not todo:
            return results
        left = sum(r.estimate_s for r in todo)
        log(f"[{mode.name}] {len(todo)} runs to go, about {left / 60:.0f} min on an idle machine")
        for run in todo:
            t0 = time.time()
            if execute(run, out_dir, mpiexec=mpiexec, python=python, log=log):
                log(f"  done in {time.time() - t0:.0f} s")
            else:
                failed.add(run.name)


def print_plan(mode: Mode) -> None:
    runs = plan(mode, {})
    for r in runs:
        print(f"{r.estimate_s / 60:6.1f} min  {r.name}")
    total = sum(r.estimate_s for r in runs)
    print(f"{len(runs)} runs planned now (LARS seeds after the sweep are planned once it is "
          f"done); about {total / 3600:.1f} h on an idle 2-core machine")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the ~15-minute set")
    p.add_argument("--plan", action="store_true", help="list the runs, run nothing")
    p.add_argument("--report-only", action="store_true", help="report the finished runs only")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="run folders (default runs/experiments/<mode>)")
    p.add_argument("--docs", type=Path, default=ROOT / "docs", help="where results.md goes")
    args = p.parse_args(argv)
    mode = QUICK if args.quick else FULL
    if args.plan:
        print_plan(mode)
        return 0
    out_dir = (args.out_dir or ROOT / "runs" / "experiments" / mode.name).resolve()
    venv = ROOT / ".venv" / "bin"
    if not args.report_only:
        subprocess.check_call([str(ROOT / "tools" / "setup.sh")])
        subprocess.check_call([str(venv / "python"), str(ROOT / "tools" / "fashion_mnist_to_lmdb.py"),
                               "--out", str(ROOT / "data" / "fashion-mnist")])
        t0 = time.time()
        run_all(mode, out_dir, mpiexec=str(venv / "mpiexec"), python=str(venv / "python"),
                log=lambda line: print(line, flush=True))
        print(f"[{mode.name}] all runs finished in {(time.time() - t0) / 60:.1f} min")
    runs, results = settle(mode, out_dir)
    path = write_report(mode, runs, results, out_dir, args.docs)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
