"""Both trainers' entry points (hpcsgd/run/entry.py) under a real `mpiexec -n 2`: a bad command
line and a launcher that does not match mpi4py's MPI are refused with exit code 2."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))

pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")

ENTRY_POINTS = [("hpcsgd.train", "hpcsgd"), ("hpcsgd.lm.train", "hpcsgd.lm")]


def _launch(tmp_path, module, *args, env_extra=()):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_EXPECT"))}
    env.update(env_extra)
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module, prog", ENTRY_POINTS)
@pytest.mark.parametrize("args", [(), ("--train.epochs=1",)])
def test_a_command_without_config_file_is_refused_with_the_usage(tmp_path, module, prog, args):
    res = _launch(tmp_path, module, *args)
    assert res.returncode == 2, res.stderr
    usage = (f"{prog}: refused: usage: python -m {module} CONFIG.toml [--section.key=value ...]"
             " (all ranks)")
    assert res.stderr.count(usage) == 1, res.stderr  # rank 0 reports for both ranks


@pytest.mark.parametrize("module, prog", ENTRY_POINTS)
def test_a_world_of_another_size_than_launched_is_refused(tmp_path, module, prog):
    # what a foreign mpiexec looks like: it starts N singletons; here the launcher claims 3
    res = _launch(tmp_path, module, "job.toml", env_extra={"HPCSGD_EXPECT_WORLD": "3"})
    assert res.returncode == 2, res.stderr
    assert f"{prog}: the launcher started 3 processes but MPI sees a world of 2" in res.stderr
    assert "refused" not in res.stderr  # stopped before reading any configuration
