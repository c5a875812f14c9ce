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


def run_patched_training(tmp_path: Path, patch: str, job_toml: str, ranks: int = 2,
                         timeout: float = 400.0):
    """`mpiexec -n ranks` of hpcsgd.train on tmp_path/job.toml (job_toml) after `patch`, a
    test-only change of some ranks (Python run in the launched script, with `MPI` and `time`
    imported); returns (CompletedProcess, seconds). The timeout ends a run that hangs."""
    import os
    import shutil
    import subprocess
    import sys
    import time
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    (tmp_path / "job.toml").write_text(job_toml)
    (tmp_path / "patched.py").write_text(
        "import sys, time\nfrom mpi4py import MPI\n" + patch +
        "\nfrom hpcsgd.train import main\nsys.exit(main(sys.argv[1:]))\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_"))}
    t0 = time.time()
    res = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "patched.py", "job.toml"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    return res, time.time() - t0


def hits_vector(n_right: int, flip: range = range(0), n: int = 10000) -> np.ndarray:
    """Per-image top-1 hits of a made-up evaluation: the first n_right images right, then the
    images in flip inverted (two such vectors agree on all but the flipped images)."""
    hits = np.arange(n) < n_right
    hits[list(flip)] ^= True
    return hits
