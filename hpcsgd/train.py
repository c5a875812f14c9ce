"""Synchronous data-parallel SGD training of image classifiers: the entry point and the task.

    mpiexec -n 4 .venv/bin/python -m hpcsgd.train jobs/local/fashion_mnist.toml [--train.epochs=5]

Every step (hpcsgd/run/loop.py): data -> forward -> backward (the gradient allreduce overlaps it)
-> synchronize -> schedule -> optimizer step; the shared trainer is hpcsgd/run/trainer.py, and
ImageTask below is what is particular to images. Rank 0 prints the config and progress and writes the run folder
(config.toml, metrics.jsonl, summary.json, final.pt, checkpoints/step_*.pt).

Exit codes: 0 done; 2 refused before any work (bad config, missing data or checkpoint);
3 (EXIT_REQUEUE) stopped by SIGUSR1/SIGTERM after writing a checkpoint: requeue the job with
``--checkpoint.resume=auto`` to continue exactly; 4 the stall watchdog ended the job; 5
(EXIT_NONFINITE) a NaN/Inf loss or gradient stopped the run (train.nonfinite, named in the
log); anything else: a rank failed and the job was aborted.
"""
from __future__ import annotations

import sys

import torch.nn.functional as F

from hpcsgd import config as config_mod
from hpcsgd.run import trainer
from hpcsgd.data import build_loaders
from hpcsgd.run.entry import config_from_argv, run_entry
from hpcsgd.run.evaluate import evaluate
from hpcsgd.store.lmdb_store import DataPathError, check_lmdb_path
from hpcsgd.models import build_from_config
from hpcsgd.run.folder import check_run_folder
from hpcsgd.run.world import World, agree, run_or_abort


def check_files(cfg: config_mod.Config) -> None:
    """What the file system must hold before work (the tree itself is validated as it is
    loaded): both splits' LMDBs, and no earlier run in the run folder."""
    for split in (cfg.data.train_split, cfg.data.eval_split):
        check_lmdb_path(f"{cfg.data.path}/{split}")
    check_run_folder(cfg)  # never mix two runs in one folder


class ImageTask:
    """Image classification on LMDB records: cross-entropy, exact top-k evaluation."""
    prog, unit = "hpcsgd", "img"
    gradients_read_only = True
    """The loop only reads the averaged gradients: they may be the node's shared memory."""

    def __init__(self, cfg: config_mod.Config, world: World):
        self.cfg, self.world = cfg, world
        self.local_batch = config_mod.local_batch(cfg, world.size)
        self.model_name = cfg.model.name

    def build_data(self, placement) -> int:
        """Collective (staging): the loaders; returns the steps per epoch."""
        self.loader, self.eval_source = build_loaders(self.cfg, self.world, self.local_batch)
        placement.pin_workers(self.loader)
        return self.loader.steps_per_epoch

    def batches(self, epoch: int, start: int, collapse):
        return self.loader.epoch(epoch, start, collapse)

    def build_model(self):
        return build_from_config(self.cfg)

    def attach_optimizer(self, optimizer, model) -> None:
        pass

    def loss(self, forward, images, labels):
        return F.cross_entropy(forward(images), labels)

    def evaluate(self, forward) -> dict:
        return evaluate(forward, self.eval_source, self.world, self.cfg.compute)

    @staticmethod
    def eval_line(result: dict) -> str:
        return (f"top-1 {result['top1']:.2%}  top-5 {result['top5']:.2%}  "
                f"({result['count']} images)")

    @staticmethod
    def train_fields(mean_loss) -> dict:
        return {}

    def rank_state(self) -> dict:
        return {}  # nothing carried between steps beyond RNG and buffers

    def load_rank_state(self, state: dict) -> None:
        pass

    def start_fields(self) -> dict:
        return {"local_batch": self.local_batch}

    def summary(self, progress, *, steps_per_epoch: int, wall_time: float) -> tuple[dict, str]:
        corrupt = self.world.comm.allreduce(self.loader.source.stats.corrupt
                                            + self.eval_source.stats.corrupt)
        last = progress.last_eval
        summary = {"top1": last["top1"], "top5": last["top5"], "eval_images": last["count"],
                   "steps": progress.step, "epochs": progress.step / steps_per_epoch,
                   "ranks": self.world.size, "global_batch": self.cfg.train.global_batch,
                   "train_img_per_s": progress.images_done / max(progress.train_time, 1e-9),
                   "train_time_s": progress.train_time, "wall_time_s": wall_time,
                   "corrupt_records": corrupt, "time_to_target_s": progress.time_to_target}
        return summary, (f"final: {self.cfg.data.eval_split} top-1 {summary['top1']:.2%} on "
                         f"{summary['eval_images']} "
                         f"images | training throughput {summary['train_img_per_s']:.0f} img/s")


def train(cfg: config_mod.Config, world: World) -> dict:
    """Run the configured image training; returns the summary (final top-1, throughput...)."""
    return trainer.train(ImageTask(cfg, world), cfg, world)


def setup(argv: list[str], world: World) -> config_mod.Config:
    """Parse and check the config on every rank; all ranks agree before anyone works."""
    def parse():
        cfg = config_from_argv(argv, "hpcsgd.train", world_size=world.size, task="image")
        check_files(cfg)
        return cfg
    return agree(world, parse, config_mod.ConfigError, DataPathError)


def main(argv: list[str] | None = None) -> int:
    def start(args: list[str], world: World) -> dict:
        return run_or_abort(world, train, setup(args, world), world)
    return run_entry("hpcsgd", start, argv)


if __name__ == "__main__":
    sys.exit(main())
