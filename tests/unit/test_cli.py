"""The entry point under a real `mpiexec -n 4`: bad input is refused before any work, by
every rank, with one message naming the option, value or path."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from helpers import tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))

pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")


def _launch(tmp_path, *args, ranks=4, module="hpcsgd.train"):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_EXPECT"))}
    cmd = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def job(tmp_path):
    tiny_dataset(tmp_path / "data")
    (tmp_path / "job.toml").write_text(
        '[data]\npath = "data"\naugment = false\n[train]\nepochs = 1.0\nglobal_batch = 64\n'
        '[compute]\nthreads = 1\n')
    return tmp_path


@pytest.mark.parametrize("override, message", [
    ("--optim.bogus=1", "unknown option 'optim.bogus'"),
    ("--train.global_batch=abc", "train.global_batch: expected an integer, got 'abc'"),
    ("--train.global_batch=66", "train.global_batch = 66: must be divisible by ranks x "
                                "accumulation = 4 x 1"),
    ("--data.path=/no/such/folder", "data path '/no/such/folder/train' does not exist"),
    # a schedule plan that only fails with the epochs known: refused before work too
    ("--schedule.decay=cyclic", "schedule.cyclic_start = 45.0: must be < train.epochs = 1.0"),
    ("--model.name=lstm_lm", "model.name = 'lstm_lm': a language model"),
])
def test_bad_input_is_refused_by_every_rank_with_one_message(job, override, message):
    res = _launch(job, "job.toml", override)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count(message) == 1, res.stderr  # rank 0 reports for all ranks
    assert not (job / "runs").exists()                 # nothing started


def test_good_job_trains_and_reports(job):
    res = _launch(job, "job.toml", "--train.epochs=2.0")
    assert res.returncode == 0, res.stderr
    assert "final: test top-1" in res.stdout and "on 4 ranks" in res.stdout
    # start-up names the options this job sets, not the whole tree (that is in config.toml)
    assert "  train.global_batch = 64\n" in res.stdout and "[lm]" not in res.stdout
    assert "  optim.base_lr" not in res.stdout              # a default: not repeated
    assert (job / "runs" / "run" / "final.pt").is_file()


def test_an_exception_on_one_rank_ends_the_whole_job(job):
    # every record is corrupt: the first rank to hit its corrupt-record limit fails while the
    # others would wait in the allreduce: the job must end with that rank named, not hang
    import lmdb
    from hpcsgd.store.datum import record_key
    env = lmdb.open(str(job / "data" / "train"), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for i in range(512):
            txn.put(record_key(i), b"\x22\x7f")
    env.close()
    res = _launch(job, "job.toml")
    assert res.returncode != 0
    assert "aborting all 4 ranks" in res.stderr and "CorruptDataError" in res.stderr
    assert "'NoneType' object" not in res.stderr  # the aborting rank ran on after MPI_Abort


def _hashes(folder):
    import hashlib
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_rerun_into_an_existing_run_folder_is_refused_and_changes_nothing(job):
    assert _launch(job, "job.toml").returncode == 0
    run = job / "runs" / "run"
    before = _hashes(run)
    res = _launch(job, "job.toml", "--train.epochs=2.0")
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("holds an earlier run") == 1, res.stderr
    assert "--run.overwrite=true" in res.stderr and "--checkpoint.resume=auto" in res.stderr
    assert _hashes(run) == before                       # nothing in the folder changed

    res = _launch(job, "job.toml", "--train.epochs=2.0", "--run.overwrite=true")
    assert res.returncode == 0, res.stderr
    starts = [line for line in (run / "metrics.jsonl").read_text().splitlines()
              if '"tag": "start"' in line]
    assert len(starts) == 1                             # replaced, not merged
    # resuming the run is not a rerun: it is allowed
    assert _launch(job, "job.toml", "--checkpoint.resume=auto").returncode == 0


HPCSGD = Path(sys.executable).parent / "hpcsgd"


def test_the_hpcsgd_command_and_its_help():
    res = subprocess.run([str(HPCSGD), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "collapsed-ensemble" in res.stdout and "train" in res.stdout
    res = subprocess.run([str(HPCSGD), "train", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "usage: mpiexec -n N hpcsgd train CONFIG.toml" in res.stdout
    # the options of one section: name, default, type and the docstring from the dataclass
    res = subprocess.run([str(HPCSGD), "train", "--help", "optim"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "--optim.base_lr=0.1    (float)" in res.stdout
    assert "Peak LR for the global batch" in res.stdout
    assert "--schedule." not in res.stdout                  # only the section asked for
    # the module keeps working and answers --help the same way, without MPI
    res = subprocess.run([sys.executable, "-m", "hpcsgd.train", "-h"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "Sections" in res.stdout
    res = subprocess.run([str(HPCSGD), "lm-score", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "usage: hpcsgd lm-score" in res.stdout and "--snapshot" in res.stdout
    res = subprocess.run([str(HPCSGD), "nonsense"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "invalid choice: 'nonsense'" in res.stderr


def test_a_warmup_longer_than_the_run_names_the_option_to_change(job):
    res = _launch(job, "job.toml", "--schedule.warmup_epochs=1.0", ranks=1)
    assert res.returncode == 2
    assert "set --schedule.warmup_epochs below 1 (or raise --train.epochs)" in res.stderr


def test_launch_script_and_planner_refuse_in_one_line():
    script = ROOT / "jobs" / "mpirun.sh"
    res = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.startswith("usage: jobs/mpirun.sh JOB.toml")
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "jobs/mpirun.sh JOB.toml" in res.stdout
    res = subprocess.run([str(script), "nope.toml"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip() == "jobs/mpirun.sh: job file 'nope.toml' does not exist"
    res = subprocess.run([sys.executable, "-m", "hpcsgd", "affinity", "plan",
                          "--config", "nope.toml"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("hpcsgd affinity plan: refused: config file 'nope.toml' does "
                                  "not exist")
    # the old script path still works (a shim), naming itself
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "affinity.py"), "plan",
                          "--config", "nope.toml"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.startswith("tools/affinity.py plan: refused:")


@pytest.mark.parametrize("module, args, message", [
    ("hpcsgd.ensemble", ["--snapshots", "none.pt"], "hpcsgd.ensemble: refused: checkpoint "
                                                    "'none.pt' does not exist"),
    ("hpcsgd.ensemble", ["--snapshots", "none.pt", "--report", "../e.json"],
     "hpcsgd.ensemble: refused: --report '../e.json': a file name, written in the run folder"),
    ("hpcsgd.lm.score", ["--snapshot", "final.pt", "--report", "out/t.json"],
     "hpcsgd.lm.score: refused: --report 'out/t.json': a file name, written in the run folder"),
    ("hpcsgd.lm.score", ["--snapshot", "final.pt", "--lm.eval_split=dev"],
     "hpcsgd.lm.score: refused: lm.eval_split"),
])
def test_the_evaluation_tools_refuse_in_one_line(job, module, args, message):
    res = _launch(job, "job.toml", *args, ranks=2, module=module)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().startswith(message) and len(res.stderr.strip().splitlines()) == 1
