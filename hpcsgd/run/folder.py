"""The run folder both trainers write (hpcsgd/train.py, hpcsgd/lm/train.py): its opening and
its closing.

    <run.out_dir>/<run.name>/config.toml     the full configuration, written at the start
                             metrics.jsonl   tagged JSON lines (hpcsgd.run.metrics.MetricsLog)
                             summary.json    the run's summary, written at the end
                             tensorboard/    event files of the same numbers (run.tensorboard,
                                             when the tensorboard package is installed)

Rank 0 writes; every rank calls both functions (finish_run is collective).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from hpcsgd.config import Config, ConfigError, to_toml
from hpcsgd.config.load import _toml_value
from hpcsgd.run.metrics import MetricsLog
from hpcsgd.run.world import World


RUN_FILES = ("config.toml", "metrics.jsonl", "summary.json")
"""Files whose presence makes a folder an earlier run's."""


def check_run_folder(cfg: Config) -> None:
    """Refuse (ConfigError) to start a run in an earlier run's folder: the two would mix
    (metrics appended, summary and final.pt replaced). Resuming it (checkpoint.resume =
    "auto") continues that run; run.overwrite = true replaces it."""
    run_dir = cfg.run_dir
    resume = cfg.checkpoint.resume
    if cfg.run.overwrite and resume not in ("", "auto") \
            and Path(resume).resolve().is_relative_to(run_dir.resolve()):
        raise ConfigError(f"run.overwrite = true would delete {resume!r}, the checkpoint "
                          "this run resumes from: resume into another --run.name")
    if cfg.run.overwrite or resume == "auto":
        return
    if any((run_dir / name).exists() for name in RUN_FILES):
        raise ConfigError(f"run folder {str(run_dir)!r} holds an earlier run: choose another "
                          "--run.name, continue it with --checkpoint.resume=auto, or replace "
                          "it with --run.overwrite=true")


def open_run(cfg: Config, world: World, banner: str) -> MetricsLog:
    """Create the run folder with config.toml (an earlier run's folder is emptied first with
    run.overwrite); print ``banner`` and the configuration; return the metrics log (a no-op
    on ranks other than 0)."""
    run_dir = cfg.run_dir
    if world.is_root:
        if cfg.run.overwrite and cfg.checkpoint.resume != "auto" and run_dir.is_dir():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(to_toml(cfg))
    log = MetricsLog(run_dir / "metrics.jsonl" if world.is_root else None,
                     run_dir / "tensorboard" if cfg.run.tensorboard else None)
    log.print(f"{banner}\noptions set (the rest are defaults; all of them in "
              f"{run_dir / 'config.toml'}):\n{changed_options(cfg)}")
    return log


def changed_options(cfg: Config) -> str:
    """The options that differ from the defaults, one `section.key = value` a line: what
    makes this run this run (the whole ~150-option tree is in config.toml)."""
    default = Config()
    lines = []
    for section in dataclasses.fields(cfg):
        ours, theirs = getattr(cfg, section.name), getattr(default, section.name)
        for f in dataclasses.fields(ours):
            value = getattr(ours, f.name)
            if value != getattr(theirs, f.name):
                lines.append(f"  {section.name}.{f.name} = {_toml_value(value)}")
    return "\n".join(lines) or "  (none)"


def finish_run(run_dir: Path, world: World, log: MetricsLog, summary: dict,
               final_line: str) -> dict:
    """Write summary.json and the summary record, print ``final_line``, close the log; returns
    ``summary``. Collective."""
    if world.is_root:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    # sync point: the run folder is complete when the trainer returns
    world.watch.barrier("the barrier after writing summary.json")
    log.write("summary", **summary)
    log.print(final_line)
    log.close()
    return summary
