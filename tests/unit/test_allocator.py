"""compute.allocator: which library a training process preloads, found where a site keeps it,
and the re-executed process under a real mpiexec says in its banner what it runs with."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from hpcsgd.cpu.allocator import (AllocatorError, _entry_args, configured_choice, find, resolve)
from hpcsgd.config import ConfigError, load_config
from helpers import tiny_dataset

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))


def _libs(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return str(folder)


def test_auto_prefers_tcmalloc_then_jemalloc_then_the_system(tmp_path):
    both = _libs(tmp_path / "both", "libjemalloc.so.2", "libtcmalloc_minimal.so.4")
    je = _libs(tmp_path / "je", "libjemalloc.so.2")
    none = _libs(tmp_path / "none")
    assert resolve("auto", [both]) == ("tcmalloc", f"{both}/libtcmalloc_minimal.so.4")
    assert resolve("auto", [none, je]) == ("jemalloc", f"{je}/libjemalloc.so.2")
    label, path = resolve("auto", [none])
    assert path is None and "neither tcmalloc nor jemalloc" in label
    assert resolve("system", [both]) == ("system malloc", None)
    # a site's module folder (LD_LIBRARY_PATH) comes before the system's
    site = _libs(tmp_path / "site", "libtcmalloc.so.4")
    assert find("tcmalloc", [site, both]) == f"{site}/libtcmalloc.so.4"


def test_a_named_allocator_that_is_missing_is_refused_naming_the_option(tmp_path):
    none = _libs(tmp_path / "none")
    with pytest.raises(AllocatorError, match=r"compute\.allocator = 'jemalloc'"):
        resolve("jemalloc", [none])
    with pytest.raises(ConfigError, match=r"compute\.allocator = '/no/such/lib.so'"):
        load_config(None, ["--compute.allocator=/no/such/lib.so"])
    lib = tmp_path / "libmine.so"
    lib.write_bytes(b"")
    assert resolve(str(lib), [none]) == ("libmine.so", str(lib))


def test_only_training_entry_points_re_execute(tmp_path):
    py = sys.executable
    assert _entry_args([py, "-m", "hpcsgd.train", "a.toml", "--x.y=1"]) == ["a.toml", "--x.y=1"]
    assert _entry_args([py, "-u", "-m", "hpcsgd.lm.train", "b.toml"]) == ["b.toml"]
    assert _entry_args([py, "-m", "hpcsgd", "train", "c.toml"]) == ["c.toml"]
    assert _entry_args([py, "/venv/bin/hpcsgd", "lm", "d.toml"]) == ["d.toml"]
    assert _entry_args([py, "-m", "pytest", "tests"]) is None
    assert _entry_args([py, "-m", "hpcsgd.ensemble", "e.toml"]) is None
    assert _entry_args([py, "tools/plot_run.py", "runs/x"]) is None
    job = tmp_path / "job.toml"
    job.write_text('[compute]\nallocator = "jemalloc"\n')
    assert configured_choice([str(job)]) == "jemalloc"
    assert configured_choice([str(job), "--compute.allocator=system"]) == "system"
    assert configured_choice(["missing.toml"]) == "auto"


def _banner(tmp_path, *overrides, **env):
    tiny_dataset(tmp_path / "data", n_train=128, n_test=64)
    (tmp_path / "job.toml").write_text('[data]\npath = "data"\naugment = false\n[train]\n'
                                       'epochs = 1.0\nglobal_batch = 64\n[compute]\nthreads = 1\n')
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_"))}
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "hpcsgd.train", "job.toml",
                          *overrides], cwd=tmp_path, env={**clean, **env}, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


pytestmark_mpi = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                    reason="launches its own mpiexec (not from inside one)")


@pytestmark_mpi
def test_without_any_allocator_auto_falls_back_and_says_so(tmp_path):
    out = _banner(tmp_path, HPCSGD_ALLOCATOR_DIRS=str(tmp_path / "nothing"))
    assert "memory allocator: system malloc (auto: neither tcmalloc nor jemalloc found)" in out
    assert "| system malloc (auto" in out.splitlines()[-1]          # the final line too


@pytestmark_mpi
@pytest.mark.skipif(find("tcmalloc") is None, reason="tcmalloc is not installed")
def test_every_rank_runs_with_tcmalloc_by_default(tmp_path):
    out = _banner(tmp_path)
    assert "memory allocator: tcmalloc (compute.allocator = 'auto')" in out
    assert out.splitlines()[-1].startswith("final:") and "| tcmalloc |" in out.splitlines()[-1]
    # every rank re-executed itself with it (the banner is rank 0's; the start record has all)
    from hpcsgd.run.metrics import read_metrics
    (start,) = read_metrics(tmp_path / "runs" / "run" / "metrics.jsonl", "start")
    assert start["allocators"] == ["tcmalloc", "tcmalloc"]
    out = _banner(tmp_path / "sys", "--compute.allocator=system")
    assert "memory allocator: system malloc (compute.allocator = 'system')" in out
