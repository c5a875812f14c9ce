"""Judging a soak round by rule, and the summary table: each fault's expected outcome, what
the job's output must name, and `judge`, which sets a round's `ok` from its JSON record and
the faulted run's output (also used to re-score a saved JSONL: --rescore)."""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from tools.soak.checkpoints import checkpoints_sound
from tools.soak.job import STALL_S

FAULTS = ("none", "sigkill", "sigstop", "sigusr1", "sigterm", "corrupt", "ckptkill",
          "truncate", "fulldisk")
EXPECTED = {"none": "exit 0, loss = reference", "sigkill": "exit != 0, checkpoints sound",
            "sigstop": "exit 4 (stall)", "sigusr1": "exit 3, resume = reference",
            "sigterm": "exit 3, resume = reference", "corrupt": "exit 0, counted",
            "ckptkill": "exit != 0, no torn file, resume from the one before = reference, "
            "temp file gone",
            "truncate": "exit 3; resume from the one before, warned, kept = reference",
            "fulldisk": "exit != 0 within 5 s, no temp file, the one before loads"}
NAMED = {"none": "-", "sigkill": "its pid", "sigstop": "its rank", "sigusr1": "the signal",
         "sigterm": "the signal", "corrupt": "every key", "ckptkill": "its pid",
         "truncate": "the damaged file", "fulldisk": "the file and ENOSPC"}
"""What the job's output must name for `named` (recorded, not part of the outcome)."""


def named(fault: str, rank: int, pid: int, output: str) -> bool:
    """Whether the job's output names the faulty process: mpiexec's report of a killed
    process gives its pid; the stall watchdog's lists the ranks that did not arrive or do
    not answer; a stop names the signal (the ranks agree on it, whichever received it)."""
    if fault in ("sigkill", "ckptkill"):
        return f"PID {pid} " in output
    if fault == "sigstop":
        lists = re.findall(r"have not arrived: \[([0-9, ]*)\]; ranks not responding "
                           r"\(dead or stuck inside MPI\): \[([0-9, ]*)\]", output)
        return any(str(rank) in re.split(r"[, ]+", a + "," + b) for a, b in lists)
    return f"stopped by {fault.upper()} at step" in output


def stalled_collective(output: str) -> str | None:
    """The collective a stall report names: the reducer watchdog's or the main thread's."""
    m = re.search(r"collective #\d+ \((.*?)\) has not completed|rank \d+: (.*?) unfinished "
                  r"after", output)
    return (m.group(1) or m.group(2)) if m else None


def judge(rec: dict, output: str) -> None:
    """Set the round's `named`, `stalled_collective` and `ok` from its record and the faulted
    run's output."""
    fault, code, injected = rec["fault"], rec["exit"], rec["injected_s"] is not None
    rec["named"] = named(fault, rec["rank"], rec.get("pid"), output) if injected else None
    ok = not rec["survivors"]
    if rec.get("skipped"):  # fulldisk where no tmpfs can be mounted: said, not counted
        ok = True
    elif fault == "none":
        ok &= code == 0 and rec["loss_equal"]
    elif fault == "sigkill":
        # soaks before the checkpoint faults (no periodic checkpoints) did not inspect them
        ok &= (code != 0 if injected else code == 0) \
            and ("checkpoints" not in rec or checkpoints_sound(rec["checkpoints"]))
    elif fault == "ckptkill":
        ok &= injected and code != 0 and checkpoints_sound(rec["checkpoints"]) \
            and not rec["killed_file_exists"] and _resumed(rec, step=rec["expected_from"]) \
            and not rec.get("stray_after_resume")
    elif fault == "truncate":
        ok &= code == 3 and bool(rec.get("truncated")) and rec["kept"]
        if rec.get("previous"):  # falls back to it, saying so
            rec["named"] = rec["warned"]
            ok &= rec["warned"] and _resumed(rec, path=rec["previous"])
        else:  # nothing older to fall back to: refused, naming the file
            rec["named"] = rec["refusal_names_it"]
            ok &= rec["resume_exit"] == 2 and rec["refusal_names_it"]
    elif fault == "fulldisk":
        view = rec["checkpoints"]
        rec["named"] = rec["names_error"]
        ok &= injected and code not in (None, 0, 3) and rec["end_s"] <= STALL_S \
            and not view["stray_tmp"] and checkpoints_sound(view) and bool(view["files"])
    elif fault == "sigstop":
        ok &= code == 4
        rec["stalled_collective"] = stalled_collective(output)
    elif fault in ("sigusr1", "sigterm"):
        ok &= code == 3 and _resumed(rec, step=rec["stopped_step"])
    elif fault == "corrupt":
        ok &= code == 0 and bool(rec["corrupt_counted"])
        rec["named"] = all(f"'{k}'" in output for k in rec["keys"])
    rec["ok"] = bool(ok)
    rec.pop("stderr_tail", None)
    if not ok:
        rec["stderr_tail"] = output[-1500:]


def _resumed(rec: dict, *, step: int | None = None, path: str | None = None) -> bool:
    """The resume ran to the end, left no process behind, its loss equal to the reference
    run's at every logged step, and started at `step` / from the file `path` when given."""
    return rec["resume_exit"] == 0 and not rec["resume_survivors"] and rec["loss_equal"] \
        and (step is None or rec["resumed_from"] == step) \
        and (path is None or rec["resumed_from_path"] == path)


def rescore(out: Path) -> list[dict]:
    """Re-judge <out>/rounds.jsonl from each round's saved output (its first run's)."""
    rounds = [json.loads(line) for line in open(out / "rounds.jsonl")]
    for rec in rounds:
        first = sorted((out / f"round_{rec['round']:03d}").glob("output_*.txt"))[0]
        judge(rec, first.read_text(errors="replace"))
    with open(out / "rounds.jsonl", "w") as f:
        f.writelines(json.dumps(rec) + "\n" for rec in rounds)
    return rounds


def summary_table(rounds: list[dict]) -> str:
    lines = ["| fault | rounds | expected outcome | met | processes left | output names | "
             "named | median / max s to the last process gone |",
             "|---|---|---|---|---|---|---|---|"]
    for fault in FAULTS:
        rs = [r for r in rounds if r["fault"] == fault]
        if not rs:
            continue
        ends = [r["end_s"] for r in rs if r.get("end_s") is not None]
        timing = f"{statistics.median(ends):.1f} / {max(ends):.1f}" if ends else "-"
        count = "-" if fault == "none" else f"{sum(bool(r.get('named')) for r in rs)}"
        skipped = sum(bool(r.get("skipped")) for r in rs)
        met = sum(r["ok"] for r in rs) - skipped
        met = f"{met} ({skipped} skipped)" if skipped else met
        lines.append(f"| {fault} | {len(rs)} | {EXPECTED[fault]} | {met} "
                     f"| {sum(bool(r['survivors']) for r in rs)} | {NAMED[fault]} | {count} "
                     f"| {timing} |")
    return "\n".join(lines)
