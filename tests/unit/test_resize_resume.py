"""A requeued job may get fewer or more nodes: a checkpoint written by 4 ranks resumes on 2,
and one written by 2 resumes on 4, with the same samples at every step (hpcsgd/data/sharding.py
makes a step's samples independent of the number of ranks). Real `mpiexec`; LeNet (no
BatchNorm, whose per-rank batch statistics would differ) and no augmentation (the 28x28 sets
draw it per rank), so the resumed losses equal the uninterrupted run's up to the summation
order of the gradient average."""
import math
import subprocess
import sys

import pytest

from test_faults import MPIEXEC, _env, _metrics
from test_faults import pytestmark  # noqa: F401 - launches its own mpiexec, as those tests do
from helpers import tiny_dataset

JOB = ('[data]\npath = "data"\naugment = false\n[model]\nname = "lenet"\n'
       '[train]\nepochs = 3.0\nglobal_batch = 64\nlog_every_steps = 1\neval_every_epochs = 3.0\n'
       '[schedule]\nwarmup_epochs = 1.0\n[optim]\nbase_lr = 0.02\n[compute]\nthreads = 1\n'
       '[checkpoint]\nevery_epochs = 1.0\n')


def _run(folder, ranks, *overrides):
    cmd = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "hpcsgd.train", "job.toml",
           *overrides]
    res = subprocess.run(cmd, cwd=folder, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return res


@pytest.mark.parametrize("before, after", [(4, 2), (2, 4)])
def test_a_checkpoint_resumes_on_another_number_of_ranks(tmp_path, before, after):
    tiny_dataset(tmp_path / "data")
    (tmp_path / "job.toml").write_text(JOB)
    _run(tmp_path, before, "--run.name=full")
    # the same job stopped after 8 of its 24 steps (checkpoint at step 8), then resumed on
    # another number of ranks
    _run(tmp_path, before, "--run.name=part", "--train.max_steps=12")
    _run(tmp_path, after, "--run.name=part", "--checkpoint.resume=auto")
    start = _metrics(tmp_path, "part", "start")[-1]
    assert start["step"] == 8 and start["ranks"] == after

    def losses(name):
        return {r["step"]: r["loss"] for r in _metrics(tmp_path, name, "train")}
    full, part = losses("full"), losses("part")
    assert sorted(full) == list(range(1, 25))
    for step in range(9, 25):
        assert math.isclose(part[step], full[step], rel_tol=1e-4), (step, part[step], full[step])
