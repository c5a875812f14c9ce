"""Metrics: tagged JSON lines (one object per event, parsed by tools), a progress line, and
TensorBoard event files of the same numbers when the tensorboard package is installed."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
import time
from pathlib import Path

TENSORBOARD_TAGS = ("train", "epoch", "eval")
"""The records mirrored as TensorBoard scalars ("<tag>/<field>", at the record's step)."""


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class MetricsLog:
    """Rank 0 appends {"tag": ..., ...} lines to <run_dir>/metrics.jsonl; other ranks no-op.
    tensorboard_dir: also write the numbers of TENSORBOARD_TAGS records there as event files
    (None, or the tensorboard package missing: JSON lines only)."""

    def __init__(self, path: Path | None, tensorboard_dir: Path | None = None):
        self.file = open(path, "a", buffering=1) if path is not None else None
        self.start = time.time()
        self.board = None
        if self.file is not None and tensorboard_dir is not None and tensorboard_available():
            try:
                from torch.utils.tensorboard import SummaryWriter  # imports tensorboard
                self.board = SummaryWriter(str(tensorboard_dir), flush_secs=30)
            except Exception as e:  # noqa: BLE001 - a broken install must not end the run
                print(f"hpcsgd: TensorBoard event files off: tensorboard failed to load "
                      f"({type(e).__name__}: {e}); metrics.jsonl has every number",
                      file=sys.stderr)

    def write(self, tag: str, **values) -> None:
        if self.file is not None:
            record = {"tag": tag, "time": round(time.time() - self.start, 3), **values}
            self.file.write(json.dumps(record) + "\n")
            if self.board is not None and tag in TENSORBOARD_TAGS and "step" in values:
                for key, value in values.items():
                    if key != "step" and isinstance(value, (int, float)) \
                            and not isinstance(value, bool) and math.isfinite(value):
                        self.board.add_scalar(f"{tag}/{key}", value, values["step"],
                                              walltime=self.start + record["time"])

    def resumed_at(self, step: int) -> None:
        """A resumed run logs again the steps after its checkpoint: TensorBoard drops its
        events from `step` on (the JSON lines keep both; tools take the later one)."""
        if self.board is not None:
            from torch.utils.tensorboard import SummaryWriter
            logdir = self.board.log_dir
            self.board.close()
            self.board = SummaryWriter(logdir, purge_step=step, flush_secs=30)

    def print(self, line: str) -> None:
        if self.file is not None:
            print(line, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.board is not None:
            self.board.close()


def read_metrics(path: str | Path, tag: str | None = None) -> list[dict]:
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if tag is None or r["tag"] == tag]


def current_records(records: list[dict]) -> list[dict]:
    """The records of the run as it went on, from read_metrics(path) in file order: a run
    resumed from its step-S checkpoint logs the steps after S again, so each start record
    drops the earlier records past its step; a fresh start (resumed_from null: resume=auto
    found no checkpoint) drops them all."""
    kept: list[dict] = []
    for r in records:
        if r.get("tag") == "start":
            since = r.get("step", 0) if r.get("resumed_from") is not None else None
            kept = [] if since is None else [k for k in kept if k.get("step", since) <= since]
        kept.append(r)
    return kept


class Timer:
    """Accumulates wall time of named phases (data, compute, comm, ...)."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, phase: str) -> None:
        """Charge the time since the previous mark to `phase`."""
        now = time.perf_counter()
        self.totals[phase] = self.totals.get(phase, 0.0) + now - self._t
        self._t = now

    def reset(self) -> dict[str, float]:
        totals, self.totals = self.totals, {}
        self._t = time.perf_counter()
        return totals
