"""Test helpers shared by unit and MPI tests: tiny real LMDBs and configs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hpcsgd.config import Config
from hpcsgd.store.lmdb_store import LMDBWriter
from hpcsgd.store.datum import raw_datum


def write_image_lmdb(path: Path, n: int, *, seed: int = 0, size: int = 28, classes: int = 10):
    """n raw 1 x size x size records whose label is learnable (brightness of a class band)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    with LMDBWriter(path, map_size=1 << 28) as w:
        for label in labels:
            img = rng.integers(0, 60, (1, size, size), dtype=np.uint8)
            row = int(label) * size // classes
            img[0, row:row + max(1, size // classes)] += 150
            w.put(raw_datum(img, int(label)))
    return labels


def tiny_dataset(root: Path, n_train: int = 512, n_test: int = 200) -> Path:
    write_image_lmdb(root / "train", n_train, seed=1)
    write_image_lmdb(root / "test", n_test, seed=2)
    return root


def tiny_config(data_path: Path, out_dir: Path, **sections) -> Config:
    cfg = Config()
    cfg.data.path = str(data_path)
    cfg.data.augment = False
    cfg.run.out_dir = str(out_dir)
    cfg.train.epochs = 2.0
    cfg.train.global_batch = 64
    cfg.train.log_every_steps = 4
    cfg.optim.base_lr = 0.05
    cfg.compute.precision = "fp32"  # exactness tests compare fp32 sums, whatever the default
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    return cfg
