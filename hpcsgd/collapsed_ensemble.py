"""Codreanu et al.'s collapsed ensemble (VI, Table XI), the whole procedure in one command.

    .venv/bin/python -m hpcsgd.collapsed_ensemble CONFIG.toml [--section.key=value ...] \
        [--collapse-epochs 3] [--launcher ".venv/bin/mpiexec -n 4"]
    (in a Slurm allocation: --launcher "srun")

1. The main run: the cyclic schedule (schedule.decay = "cyclic"), which writes a whole
   checkpoint at the end of every cycle (and at cyclic_start with cyclic_snapshot_start):
   Table XI's snapshots 1, 2, ..., 6. The main trajectory itself never collapses.
2. A collapse branch from each snapshot, Table XI's "Nc" (1c at epoch 48 = 45 + 3): the same
   trainer continues the snapshot (checkpoint.resume) with schedule.branch_from = its epoch:
   power-2 LR decay to 0 from the snapshot's LR over collapse_epochs, weight decay x
   schedule.collapse_wd_factor, scale/aspect augmentation off, random crop kept. Run folders
   <run.name>-c1, -c2, ... beside the main one.
3. hpcsgd.ensemble evaluates the uncollapsed snapshots and the branches, each alone and as
   the mean-softmax ensemble; the collapsed ensemble is of the branches (the paper's 77.5% is
   of 2c-6c).

The report, <run dir>/collapsed_ensemble.json, says what the ensemble cost beyond the main
run: collapse_epochs per branch ("extra_epochs"). A step whose output exists is skipped when
the command is run again (an interrupted procedure continues); the main run resumes from its
latest checkpoint. Exit codes: 0 done; 2 refused before anything ran; otherwise the failing
step's.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hpcsgd import config as config_mod
from hpcsgd.exits import EXIT_REFUSED
from hpcsgd.run.checkpoint import snapshot_paths
from hpcsgd.schedule.plan import build_schedule



@dataclass(frozen=True)
class Branch:
    name: str
    from_epoch: float
    snapshot: Path

    def overrides(self, collapse_epochs: float) -> list[str]:
        # a branch that did not finish restarts from its snapshot (its folder replaced)
        return [f"--run.name={self.name}", f"--checkpoint.resume={self.snapshot}",
                "--run.overwrite=true",
                f"--schedule.branch_from={self.from_epoch!r}",
                f"--schedule.collapse_epochs={collapse_epochs!r}"]


def check_main_config(cfg: config_mod.Config) -> list[float]:
    """The main run's snapshot epochs; ConfigError for a config that is no cyclic main run."""
    if cfg.schedule.decay != "cyclic":
        raise config_mod.ConfigError(f"schedule.decay = {cfg.schedule.decay!r}: the collapsed "
                                     "ensemble needs the cyclic schedule ('cyclic')")
    if cfg.schedule.branch_from:
        raise config_mod.ConfigError(f"schedule.branch_from = {cfg.schedule.branch_from!r}: "
                                     "give the main run's config; the branches are made here")
    return build_schedule(cfg).snapshot_epochs()


def plan_branches(cfg: config_mod.Config, snapshots: list[Path]) -> list[Branch]:
    """One branch per snapshot, paired with the schedule's snapshot epochs in order."""
    epochs = check_main_config(cfg)
    if len(snapshots) != len(epochs):
        raise config_mod.ConfigError(
            f"{cfg.run_dir / 'snapshots'} holds {len(snapshots)} snapshots, the schedule "
            f"makes {len(epochs)} (epochs {', '.join(f'{e:g}' for e in epochs)})")
    return [Branch(f"{cfg.run.name}-c{k}", epoch, path)
            for k, (epoch, path) in enumerate(zip(epochs, snapshots), start=1)]


def _summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


class Procedure:
    """Runs the steps as child jobs of the launcher; each step is skipped once done."""

    def __init__(self, config: str, overrides: list[str], launcher: list[str]):
        self.config, self.overrides, self.launcher = config, overrides, launcher

    def launch(self, module: str, extra: list[str]) -> None:
        cmd = [*self.launcher, sys.executable, "-m", module, self.config, *self.overrides,
               *extra]
        print("+ " + shlex.join(cmd), flush=True)
        code = subprocess.call(cmd)
        if code != 0:
            raise SystemExit(code)

    def evaluate(self, paths: list[Path], report: str, run_dir: Path) -> dict:
        if not (run_dir / report).is_file():
            self.launch("hpcsgd.ensemble", ["--report", report, "--snapshots", *map(str, paths)])
        return json.loads((run_dir / report).read_text())


def run(cfg: config_mod.Config, procedure: Procedure, collapse_epochs: float) -> dict:
    main_dir = cfg.run_dir
    if _summary(main_dir) is None:
        procedure.launch("hpcsgd.train", ["--checkpoint.resume=auto"])
    main = _summary(main_dir)
    branches = plan_branches(cfg, snapshot_paths(main_dir))
    results = []
    for branch in branches:
        branch_dir = main_dir.parent / branch.name
        if _summary(branch_dir) is None:
            procedure.launch("hpcsgd.train", branch.overrides(collapse_epochs))
        results.append(_summary(branch_dir))
    finals = [main_dir.parent / b.name / "final.pt" for b in branches]
    uncollapsed = procedure.evaluate([b.snapshot for b in branches], "snapshots_eval.json",
                                     main_dir)
    collapsed = procedure.evaluate(finals, "collapsed_eval.json", main_dir)
    report = {
        "main": {"name": cfg.run.name, "epochs": main["epochs"], "top1": main["top1"],
                 "top5": main["top5"]},
        "snapshots": [{"epoch": b.from_epoch, "path": str(b.snapshot), **r}
                      for b, r in zip(branches, uncollapsed["snapshots"])],
        "snapshot_ensemble": uncollapsed["ensemble"],
        "branches": [{"name": b.name, "from_epoch": b.from_epoch, "epochs": collapse_epochs,
                      **r} for b, r in zip(branches, collapsed["snapshots"])],
        "ensemble": {**collapsed["ensemble"], "members": [b.name for b in branches]},
        # Codreanu VI presents the ensemble as free; the branches are not: say what they cost
        "extra_epochs": collapse_epochs * len(branches),
        "eval_split": cfg.data.eval_split,
    }
    (main_dir / "collapsed_ensemble.json").write_text(json.dumps(report, indent=2))
    return report


def print_report(report: dict) -> None:
    print(f"main run, {report['main']['epochs']:g} epochs: top-1 {report['main']['top1']:.2%}")
    for snap, branch in zip(report["snapshots"], report["branches"]):
        print(f"  epoch {snap['epoch']:g}: snapshot {snap['top1']:.2%} -> collapsed "
              f"({branch['epochs']:g} epochs) {branch['top1']:.2%}  [{branch['name']}]")
    print(f"ensemble of the {len(report['branches'])} collapse branches: top-1 "
          f"{report['ensemble']['top1']:.2%} (of the uncollapsed snapshots: "
          f"{report['snapshot_ensemble']['top1']:.2%}) on {report['eval_split']}; "
          f"{report['extra_epochs']:g} epochs beyond the main run's "
          f"{report['main']['epochs']:g}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcsgd.collapsed_ensemble", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="the main run's TOML (schedule.decay = 'cyclic')")
    p.add_argument("--collapse-epochs", type=float, default=3.0,
                   help="length of each collapse branch (Table XI: 3; 1c = 45 + 3 = 48)")
    default_mpiexec = Path(sys.executable).parent / "mpiexec"
    p.add_argument("--launcher", default=f"{default_mpiexec} -n 4",
                   help="command that starts the ranks of each step (default: %(default)s)")
    args, overrides = p.parse_known_args(argv)
    try:
        if args.collapse_epochs <= 0:
            raise config_mod.ConfigError(f"--collapse-epochs {args.collapse_epochs!r}: must "
                                         "be > 0")
        cfg = config_mod.load_config(args.config, overrides)
        check_main_config(cfg)
    except config_mod.ConfigError as e:
        print(f"hpcsgd.collapsed_ensemble: refused: {e}", file=sys.stderr)
        return EXIT_REFUSED
    procedure = Procedure(args.config, overrides, shlex.split(args.launcher))
    try:
        print_report(run(cfg, procedure, args.collapse_epochs))
    except config_mod.ConfigError as e:  # the main run left other snapshots than planned
        print(f"hpcsgd.collapsed_ensemble: {e}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
