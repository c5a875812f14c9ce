"""The run folder both trainers write (hpcsgd/train.py, hpcsgd/lm/train.py): its opening and
its closing.

    <run.out_dir>/<run.name>/config.toml     the full configuration, written at the start
                             metrics.jsonl   tagged JSON lines (hpcsgd.metrics.MetricsLog)
                             summary.json    the run's summary, written at the end
                             tensorboard/    event files of the same numbers (run.tensorboard,
                                             when the tensorboard package is installed)

Rank 0 writes; every rank calls both functions (finish_run is collective).
"""
from __future__ import annotations

import json
from pathlib import Path

from hpcsgd.config import Config, to_toml
from hpcsgd.metrics import MetricsLog
from hpcsgd.world import World


def open_run(cfg: Config, world: World, banner: str) -> MetricsLog:
    """Create the run folder with config.toml; print ``banner`` and the configuration; return
    the metrics log (a no-op on ranks other than 0)."""
    run_dir = cfg.run_dir
    if world.is_root:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(to_toml(cfg))
    log = MetricsLog(run_dir / "metrics.jsonl" if world.is_root else None,
                     run_dir / "tensorboard" if cfg.run.tensorboard else None)
    log.print(banner + "\n" + to_toml(cfg))
    return log


def finish_run(run_dir: Path, world: World, log: MetricsLog, summary: dict,
               final_line: str) -> dict:
    """Write summary.json and the summary record, print ``final_line``, close the log; returns
    ``summary``. Collective."""
    if world.is_root:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    world.comm.Barrier()  # sync point: the run folder is complete when the trainer returns
    log.write("summary", **summary)
    log.print(final_line)
    log.close()
    return summary
