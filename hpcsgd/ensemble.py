"""Collapsed ensembles (Codreanu et al. VI, Table XI): evaluate snapshots and their average.

    mpiexec -n 4 .venv/bin/python -m hpcsgd.ensemble CONFIG.toml [--section.key=value ...] \
        [--snapshots a.pt b.pt ...] [--report ensemble.json]

Evaluates any set of checkpoints (a checkpoint's "model" state) and the ensemble of them:
the mean of their softmax outputs. Without --snapshots, the snapshots the cyclic schedule
wrote at its cycle ends (<run dir>/snapshots/). Codreanu et al.'s collapsed ensemble (VI,
Table XI) is of the collapse branches taken from those snapshots, not of the snapshots
themselves: ``python -m hpcsgd.collapsed_ensemble`` runs the whole procedure. The evaluation
split is shared by the ranks exactly as in training-time evaluation (every image once); the
data are decoded once and fed to every model. The report (JSON) goes to the run folder, with
which images each model got right (top1_hits: hpcsgd/run/hits.py), for paired comparisons.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from hpcsgd import config as config_mod
from hpcsgd.mpi_start import MPI
from hpcsgd.run.checkpoint import CheckpointError, load_checkpoint, snapshot_paths
from hpcsgd.run.hits import encode_hits
from hpcsgd.cpu.compute import autocast, compute_threads, prepare_model, to_layout
from hpcsgd.data import build_loaders, eval_batches
from hpcsgd.models import build_from_config
from hpcsgd.run.entry import evaluation_entry, report_file
from hpcsgd.run.world import Refused, agree, run_or_abort

TOPK = (1, 5)


@torch.no_grad()
def evaluate_ensemble(models: list, source, world, compute, *, batch: int = 250) -> list[dict]:
    """Top-k of each model and of the mean of their softmax outputs (the last), summed over
    ranks, and which images each got right at top-1 ("top1_hits", in split order: the ranks'
    blocks are consecutive, sharding.eval_shard), the same on every rank."""
    for m in models:
        m.eval()
    # counts[i] for model i (the last row: the ensemble); column 0 = samples, 1.. = top-k hits
    counts = np.zeros((len(models) + 1, 1 + len(TOPK)), np.int64)
    hits: list[list[np.ndarray]] = [[] for _ in range(len(models) + 1)]
    for images, labels in eval_batches(source, rank=world.rank, size=world.size, batch=batch):
        images = to_layout(images, compute)
        mean_probs = None
        for i, model in enumerate(models):
            with autocast(compute):
                probs = model(images).float().softmax(dim=1)
            hits[i].append(_count(counts[i], probs, labels))
            mean_probs = probs if mean_probs is None else mean_probs + probs
        hits[-1].append(_count(counts[-1], mean_probs / len(models), labels))
    world.watch.gate("the ensemble evaluation's allreduce of top-k counts")  # none waits for ever
    world.comm.Allreduce(MPI.IN_PLACE, counts, op=MPI.SUM)
    mine = np.stack([np.concatenate(h) if h else np.zeros(0, bool) for h in hits])
    world.watch.gate("gathering the per-image hits")
    every = np.concatenate(world.comm.allgather(mine), axis=1)  # rank order = split order
    return [{"count": int(c[0]), **{f"top{k}": float(c[1 + j] / c[0]) for j, k in enumerate(TOPK)},
             "top1_hits": h} for c, h in zip(counts, every)]


def _count(row: np.ndarray, probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Add a batch's samples and top-k hits to row; return its top-1 hits."""
    ranked = probs.topk(min(max(TOPK), probs.shape[1]), dim=1).indices
    hit = ranked == labels[:, None]
    row[0] += len(labels)
    for j, k in enumerate(TOPK):
        row[1 + j] += int(hit[:, :k].any(dim=1).sum())
    return hit[:, 0].numpy()


def run(cfg: config_mod.Config, world, paths: list[Path],
        report_name: str = "ensemble.json") -> dict:
    torch.set_num_threads(compute_threads(cfg.compute, world.local_size))
    world.watch.start(cfg.comm.stall_timeout_s)  # no collective waits for ever (collective)
    _, eval_source = build_loaders(cfg, world, config_mod.local_batch(cfg, world.size))
    models = []
    for path in paths:
        state = agree(world, lambda p=path: load_checkpoint(p), CheckpointError,
                      what=f"loading {path}")
        model = build_from_config(cfg)
        model.load_state_dict(state["model"])
        models.append(prepare_model(model, cfg.compute))
    results = evaluate_ensemble(models, eval_source, world, cfg.compute)
    for r in results:  # packed for JSON (hpcsgd/run/hits.py): a paired comparison reads them
        r["top1_hits"] = encode_hits(r["top1_hits"])
    report = {"snapshots": [{"path": str(p), **r} for p, r in zip(paths, results)],
              "ensemble": results[-1]}
    if world.is_root:
        for p, r in zip(paths, results):
            print(f"{p.name:28s} top-1 {r['top1']:.2%}  top-5 {r['top5']:.2%}  ({r['count']})")
        e = results[-1]
        print(f"{'ensemble of ' + str(len(paths)):28s} top-1 {e['top1']:.2%}  top-5 {e['top5']:.2%}"
              f"  ({e['count']})")
        (cfg.run_dir / report_name).write_text(json.dumps(report, indent=2))
    world.watch.barrier("the barrier after writing the report")  # sync point: report written
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("config")
    p.add_argument("--snapshots", nargs="*", type=Path)
    p.add_argument("--report", default="ensemble.json",
                   help="file name of the JSON report in the run folder")
    args, overrides = p.parse_known_args(argv)

    def start(world):
        cfg = agree(world, lambda: config_mod.load_config(args.config, overrides),
                    config_mod.ConfigError)
        paths = args.snapshots or snapshot_paths(cfg.run_dir)
        if not paths:
            raise Refused(f"no snapshots given and none in {cfg.run_dir / 'snapshots'}")
        run_or_abort(world, run, cfg, world, paths, report_file(args.report))
    return evaluation_entry("hpcsgd.ensemble", start)


if __name__ == "__main__":
    sys.exit(main())
