"""python -m tools.soak [--rounds N] [--seed S] [--faults a,b] [--out DIR] [--rescore]
(tools/soak/__init__.py says what a round is)."""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

from hpcsgd.run.checkpoint import step_checkpoints
from tools.soak.job import Job, losses, make_data, write_job
from tools.soak.rounds import Reference, run_round
from tools.soak.judge import FAULTS, rescore, summary_table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.soak",
                                 description="Fault soak of real 4-rank training runs.")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/hpcsgd-soak"))
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--train-records", type=int, default=1024)
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help="comma-separated kinds to draw from (default: all)")
    ap.add_argument("--rescore", action="store_true",
                    help="only re-judge <out>/rounds.jsonl and print the table")
    args = ap.parse_args(argv)
    if args.rescore:
        rounds = rescore(args.out)
        print(summary_table(rounds))
        return 0 if all(r["ok"] for r in rounds) else 1
    rng = random.Random(args.seed)
    kinds = args.faults.split(",")
    if set(kinds) - set(FAULTS):
        ap.error(f"--faults: unknown kinds {sorted(set(kinds) - set(FAULTS))}; known: {FAULTS}")
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    if not (data / "test" / "data.mdb").exists():
        make_data(data, args.train_records, 256)
    ref_dir = args.out / "reference"
    shutil.rmtree(ref_dir, ignore_errors=True)
    ref_dir.mkdir()
    write_job(ref_dir, data, args.epochs)
    ref = Job(ref_dir)
    code, gone, _ = ref.wait_gone(1800)
    if code != 0:
        sys.exit(f"soak: the reference run failed with exit {code}:\n{ref.output()[-2000:]}")
    ckpt = step_checkpoints(ref.run_dir / "checkpoints")[-1]
    reference = Reference(losses=losses(ref), wall_s=gone - ref.t0,
                          steps_per_epoch=ref.metrics("start")[-1]["steps_per_epoch"],
                          ckpt_bytes=ckpt.stat().st_size)
    print(f"reference: {len(reference.losses)} steps in {reference.wall_s:.1f} s, "
          f"{reference.ckpt_bytes} bytes a checkpoint", flush=True)
    rounds = []
    with open(args.out / "rounds.jsonl", "w") as out:
        for i in range(args.rounds):
            fault = rng.choice(kinds)
            rec = run_round(i, fault, rng, args.out, data, reference, args.epochs)
            rounds.append(rec)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            print(f"round {i}: {fault} rank={rec['rank']} step={rec['step']} exit={rec['exit']}"
                  f" end_s={rec['end_s']} ok={rec['ok']}", flush=True)
    table = summary_table(rounds)
    (args.out / "summary.md").write_text(table + "\n")
    print(table)
    return 0 if all(r["ok"] for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
