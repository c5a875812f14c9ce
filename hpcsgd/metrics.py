"""Metrics: tagged JSON lines (one object per event, parsed by tools) and a progress line."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class MetricsLog:
    """Rank 0 appends {"tag": ..., ...} lines to <run_dir>/metrics.jsonl; other ranks no-op."""

    def __init__(self, path: Path | None):
        self.file = open(path, "a", buffering=1) if path is not None else None
        self.start = time.time()

    def write(self, tag: str, **values) -> None:
        if self.file is not None:
            record = {"tag": tag, "time": round(time.time() - self.start, 3), **values}
            self.file.write(json.dumps(record) + "\n")

    def print(self, line: str) -> None:
        if self.file is not None:
            print(line, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def read_metrics(path: str | Path, tag: str | None = None) -> list[dict]:
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if tag is None or r["tag"] == tag]


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
