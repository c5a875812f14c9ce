#!/usr/bin/env python3
"""How long training ranks wait for data: a short ResNet-50 run on an ImageNet-style LMDB.

    flock /tmp/hpcsgd-bench.lock .venv/bin/python tools/bench_data_wait.py --ranks 2 --steps 8

Builds (once) data/imagenet-bench/{train,val}: realistic 500x375 quality-90 JPEGs cut from
the foolbox wheel's ILSVRC2012 photographs (tools/imagenet_samples.py), converted with
tools/imagenet_to_lmdb.py. Then runs the real trainer under mpiexec (ResNet-50, local batch
32, decode workers, LMDB staged in /dev/shm) and reads its metrics log: `data_s` is the time
from the end of one step until the next batch is ready, i.e. the time the rank waited for
data. Prints it per logged step and as a fraction of step time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import imagenet_samples  # noqa: E402

DATA = ROOT / "data" / "imagenet-bench"


def ensure_lmdb(per_photo: int) -> Path:
    if not (DATA / "train" / "data.mdb").is_file():
        folder = ROOT / "data" / "imagenet-bench-folder"
        imagenet_samples.make_folder(folder, per_photo=per_photo, val_per_photo=4)
        subprocess.run([sys.executable, str(ROOT / "tools/imagenet_to_lmdb.py"), "--src",
                        str(folder), "--out", str(DATA), "--workers", "2"], check=True)
    return DATA


def bench_job(lmdb: Path, out_dir: Path, name: str, **sections) -> Path:
    """Write a trainer job on the bench LMDB `lmdb` (ResNet-50, no evaluation until the end,
    a log record per step) into out_dir/job.toml; `sections` override options, e.g.
    ``train={"global_batch": 64}``. Returns the path. Shared with tools/bench_compute.py."""
    from hpcsgd.config import Config, to_toml
    cfg = Config()
    cfg.data.name, cfg.data.path, cfg.data.eval_split = "imagenet", str(lmdb), "val"
    cfg.model.name = "resnet50"
    cfg.model.num_classes = len((lmdb / "train" / "classes.txt").read_text().split())
    cfg.train.eval_every_epochs, cfg.train.log_every_steps = 100.0, 1
    cfg.optim.base_lr = 0.01
    cfg.run.name, cfg.run.out_dir = name, str(out_dir / "runs")
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    path = out_dir / "job.toml"
    path.write_text(to_toml(cfg))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="decode workers per rank")
    p.add_argument("--per-photo", type=int, default=50, help="training JPEGs per photograph")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--stage-dir", default="/dev/shm/hpcsgd-bench")
    args = p.parse_args(argv)
    data = ensure_lmdb(args.per_photo)
    n_train = json.loads((data / "train" / "summary.json").read_text())["records"]
    global_batch = 32 * args.ranks
    epochs = args.steps / (n_train // global_batch)
    with tempfile.TemporaryDirectory() as tmp:
        toml = bench_job(data, Path(tmp), "data_wait",
                         data={"workers": args.workers, "stage_dir": args.stage_dir},
                         model={"name": args.model},
                         train={"epochs": epochs, "global_batch": global_batch})
        cmd = [str(ROOT / ".venv/bin/mpiexec"), "-n", str(args.ranks), sys.executable, "-m",
               "hpcsgd.train", str(toml)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            return 1
        records = [json.loads(line) for line in open(Path(tmp) / "runs/data_wait/metrics.jsonl")]
    steps = [r for r in records if r["tag"] == "train"]
    print(f"{args.model}, {args.ranks} rank(s), local batch 32, {args.workers} decode worker(s) "
          f"per rank, {n_train} training JPEGs staged in {args.stage_dir}")
    print(f"{'step':>4s} {'step s':>8s} {'data s':>8s} {'data %':>7s}")
    for r in steps:
        total = sum(v for k, v in r.items() if k.endswith("_s"))
        print(f"{r['step']:4d} {total:8.2f} {r['data_s']:8.4f} {r['data_s'] / total:7.2%}")
    later = steps[1:]  # step 1 also waits for the first batch, decoded while nothing else runs
    total = sum(sum(v for k, v in r.items() if k.endswith("_s")) for r in later)
    waited = sum(r["data_s"] for r in later)
    first = steps[0]
    print(f"steps 2-{steps[-1]['step']}: waited {waited:.3f} s of {total:.1f} s = "
          f"{waited / total:.3%} of step time (goal < 1%); step 1 waited {first['data_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
