"""Issue 19, defect 3: a rank that skips one of the main thread's collectives outside the step
(evaluation, the buffer averaging before it, the run's last barrier) ends the job with the stall exit code, the
collective and the ranks named, instead of leaving the other rank in it for ever.

Real `mpiexec -n 2` training runs on a tiny LMDB; the skipping rank is made by a test-only
patch of rank 1 in the launched script (as tests/unit/test_stall.py does). Before the watch
covered these collectives, skipping the evaluation ended in the reducer watchdog's report of
the next step's bucket (the evaluation never named), and skipping the buffer averaging
matched rank 1's evaluation allreduce against rank 0's buffer allreduce (a mismatched
collective: an MPI error or garbage, never a named stall).
"""
import shutil
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from helpers import run_patched_training, tiny_dataset

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")

SKIP_EVALUATION = """
import hpcsgd.run.evaluate as evaluate
real = evaluate.Evaluator.after_step

def after_step(self, step):
    if MPI.COMM_WORLD.rank == 1 and step == 8:
        return  # skipped: rank 1 goes on with step 9
    return real(self, step)

evaluate.Evaluator.after_step = after_step
"""

SKIP_AVERAGE_BUFFERS = """
import hpcsgd.run.evaluate as evaluate
real = evaluate.average_buffers_

def average_buffers_(*args, **kwargs):
    if MPI.COMM_WORLD.rank == 1:
        return  # skipped: rank 1 goes on into the evaluation
    return real(*args, **kwargs)

evaluate.average_buffers_ = average_buffers_
"""

SKIP_FINAL_BARRIER = """
import hpcsgd.run.trainer as trainer
real = trainer.finish_run

def finish_run(run_dir, world, log, summary, final_line):
    if MPI.COMM_WORLD.rank == 1:
        return summary  # skipped: rank 1 leaves without the run's last barrier
    return real(run_dir, world, log, summary, final_line)

trainer.finish_run = finish_run
"""


def _run(tmp_path, patch: str, model: str, stall_timeout_s: float):
    tiny_dataset(tmp_path / "data")
    # the timeout: before the watch, such a run could hang for ever
    return run_patched_training(
        tmp_path, patch,
        f'[data]\npath = "data"\naugment = false\n[model]\nname = "{model}"\n'
        '[train]\nepochs = 2.0\nglobal_batch = 64\nlog_every_steps = 4\n'
        f'eval_every_epochs = 1.0\n[compute]\nthreads = 1\n[comm]\n'
        f'stall_timeout_s = {stall_timeout_s}\n')


def test_a_rank_that_skips_the_evaluation_ends_the_job_naming_it(tmp_path):
    res, seconds = _run(tmp_path, SKIP_EVALUATION, "lenet", 10.0)
    assert res.returncode == 4, (res.returncode, res.stderr)  # the stall exit code
    assert seconds < 120, seconds  # the 10 s limit (+ start-up), not a hang
    # rank 0 waits at the evaluation's first collective; rank 1 never came
    assert "(averaging the buffers for the evaluation at step 8) has not completed after 1" \
        in res.stderr, res.stderr
    assert "ranks that have not arrived: [1]" in res.stderr, res.stderr


def test_a_rank_that_skips_average_buffers_ends_the_job_naming_both_collectives(tmp_path):
    # a model with BatchNorm buffers, so that there is something to average
    # no limit needed: the gates meet at once (a long one, so that a slow machine cannot
    # turn rank 1's evaluation into a stall report)
    res, seconds = _run(tmp_path, SKIP_AVERAGE_BUFFERS, "cifar_resnet20", 300.0)
    assert res.returncode == 4, (res.returncode, res.stderr)
    assert seconds < 290, seconds  # before the 300 s limit: the gates, not a timeout
    # the gates meet: each rank's collective is named, no mismatched allreduce is made
    assert "ranks reached different collectives (ranks [0]: averaging the buffers for the " \
           "evaluation at step 8; ranks [1]: the evaluation's allreduce of top-k counts)" \
        in res.stderr, res.stderr


def test_a_rank_that_skips_the_final_barrier_ends_the_job_naming_it(tmp_path):
    res, seconds = _run(tmp_path, SKIP_FINAL_BARRIER, "lenet", 10.0)
    assert res.returncode == 4, (res.returncode, res.stderr)
    assert seconds < 120, seconds
    # rank 1 has left (its watchdog no longer answers): named as not responding
    assert "(the barrier after writing summary.json) has not completed after 1" in res.stderr, \
        res.stderr
    assert "ranks not responding (dead or stuck inside MPI): [1]" in res.stderr, res.stderr
