"""tools/experiments/run.py, the runner: real `mpiexec -n 4` jobs (training, then the test
evaluation of the final weights; a run cut short resumes to the uncut numbers, one cut during
its test evaluation only evaluates), stand-ins for the collapsed-ensemble command and for a
resumed run's bookkeeping, and the provenance the report names."""
import json
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import write_image_lmdb

from tools.experiments import plan as pl
from tools.experiments import plots
from tools.experiments import report as rep
from tools.experiments import run as ex


def _tiny_run(tmp_path: Path):
    """A 2-epoch LeNet run (4 steps an epoch) on a small real LMDB of each split."""
    data = tmp_path / "data"
    for split, n, seed in (("fit", 256, 1), ("val", 120, 2), ("test", 200, 3)):
        write_image_lmdb(data / split, n, seed=seed)
    over = (f"--data.path={data}", "--data.augment=false", "--compute.threads=1",
            "--train.epochs=2.0", "--train.global_batch=64", "--train.eval_every_epochs=1.0")
    return pl.Run("tiny", "nobn", "baseline", 64, 0, pl.LENET.config, over)


def test_runner_trains_then_evaluates_the_final_weights_on_test(tmp_path):
    """Two real `mpiexec -n 4` jobs: training on fit (val during training), then
    hpcsgd.ensemble on test, kept as test_eval.json."""
    run = _tiny_run(tmp_path)
    venv = Path(sys.executable).parent
    lines = []
    assert ex.execute(run, tmp_path / "runs", mpiexec=str(venv / "mpiexec"),
                      python=sys.executable, log=lines.append), \
        (tmp_path / "runs" / run.name / "stdout.log").read_text()[-3000:]
    result = ex.read_results(tmp_path / "runs", [run])[run.name]
    assert result["ranks"] == 4 and result["eval_images"] == 120  # val during training
    test = json.loads((tmp_path / "runs" / run.name / "test_eval.json").read_text())
    assert test["snapshots"][0]["count"] == 200 and result["test_top1"] == test["snapshots"][0]["top1"]
    assert not (tmp_path / "runs" / run.name / "ensemble.json").exists()


def test_runner_scores_an_lm_run_sentence_by_sentence(tmp_path):
    """Two real `mpiexec -n 4` jobs: a one-epoch LSTM on 1% of PTB's training text, then
    hpcsgd.lm.score of its final weights on the test text (test_eval.json: the perplexity
    and each sentence's NLL, which claim 7's test-text noise is measured from). Cut during
    the scoring, the run only scores again."""
    over = ("--lm.hidden=16", "--lm.layers=1", "--lm.train_fraction=0.01", "--lm.eval_streams=4",
            "--train.epochs=1.0", "--train.global_batch=20", "--compute.threads=1")
    run = pl.Run("tiny-lm", "lstm", "baseline", 20, 0, pl.LSTM, over, kind="lm")
    venv = Path(sys.executable).parent
    kw = dict(mpiexec=str(venv / "mpiexec"), python=sys.executable, log=lambda _: None)
    folder = tmp_path / "runs" / run.name
    assert ex.execute(run, tmp_path / "runs", **kw), (folder / "stdout.log").read_text()[-3000:]
    result = ex.read_results(tmp_path / "runs", [run])[run.name]
    test = json.loads((folder / "test_eval.json").read_text())
    assert test["split"] == "test" and test["count"] == 82429 and len(test["sentence_nll"]) == 3761
    assert result["perplexity"] == pytest.approx(test["perplexity"], rel=1e-9)  # one evaluation
    assert result["test_sentence_nll"] == test["sentence_nll"] and result["test_count"] == 82429
    (folder / "test_eval.json").unlink()
    assert run.name not in ex.read_results(tmp_path / "runs", [run])
    log = (folder / "metrics.jsonl").read_text()
    assert ex.execute(run, tmp_path / "runs", **kw), (folder / "stdout.log").read_text()[-3000:]
    assert (folder / "metrics.jsonl").read_text() == log  # not trained again
    assert json.loads((folder / "test_eval.json").read_text()) == test


def test_runner_collapsed_ensemble_is_one_command_that_resumes(tmp_path):
    """A stand-in for `python -m hpcsgd.collapsed_ensemble` (the runner's contract: one
    command, --launcher, branches <name>-c<k>, collapsed_ensemble.json)."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n"
                    'for a in "$@"; do case $a in --run.out_dir=*) out=${a#*=};; '
                    "--run.name=*) name=${a#*=};; esac; done\n"
                    'echo "$@" >> "$out/calls"\nmkdir -p "$out/$name-c1" "$out/$name-c2"\n'
                    '[ -f "$out/fail" ] && exit 3\n'
                    "echo '{\"main\": {\"epochs\": 6, \"top1\": 0.9}, \"branches\": [], "
                    "\"ensemble\": {\"top1\": 0.91}}' > \"$out/$name/collapsed_ensemble.json\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    run = pl.cyclic_runs(ex.QUICK)[0]
    out = tmp_path / "runs"
    out.mkdir()
    (out / "fail").touch()
    assert not ex.execute(run, out, mpiexec="MPIEXEC", python=str(fake), log=lambda _: None)
    (out / "fail").unlink()
    (out / run.name / "partial").touch()  # the same arguments: the tool resumes in place
    assert ex.execute(run, out, mpiexec="MPIEXEC", python=str(fake), log=lambda _: None)
    assert (out / run.name / "partial").exists()
    call = (out / "calls").read_text().splitlines()[-1].split()
    assert call[:2] == ["-m", "hpcsgd.collapsed_ensemble"] and "--collapse-epochs" in call
    assert call[call.index("--launcher") + 1:call.index("--launcher") + 4] == ["MPIEXEC", "-n", "4"]
    result = ex.read_results(out, [run])[run.name]
    assert result["collapsed"]["ensemble"]["top1"] == 0.91
    assert [p.name for p in ex.branch_folders(out, run.name)] == [f"{run.name}-c1", f"{run.name}-c2"]
    changed = replace(run, tool_args=("--collapse-epochs", "9"))
    (out / f"{run.name}-c2" / "stale").touch()
    assert ex.execute(changed, out, mpiexec="MPIEXEC", python=str(fake), log=lambda _: None)
    assert not (out / f"{run.name}-c2" / "stale").exists()  # old branches went with the run
    assert not (out / run.name / "partial").exists()


def test_a_resumed_run_keeps_the_code_of_every_process_in_its_provenance(tmp_path):
    """A run cut short and resumed under newer code was made by both; the report's Code line
    names both commits (it named the last process's only). Stand-ins for mpiexec and the
    trainer: only the driver's bookkeeping is under test."""
    mpiexec = tmp_path / "mpiexec"  # drops "-n 4", runs the rest
    mpiexec.write_text('#!/bin/sh\nshift 2\nexec "$@"\n')
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n"
                    'for a in "$@"; do case $a in --run.out_dir=*) out=${a#*=};; '
                    "--run.name=*) name=${a#*=};; esac; done\n"
                    'd="$out/$name"\n'
                    'case "$2" in hpcsgd.train) echo \'{"top1": 0.9, "wall_time_s": 3.0}\' > "$d/summary.json";; '
                    'hpcsgd.ensemble) echo \'{"snapshots": [{"count": 10000, "top1": 0.89, "top5": 0.99}]}\' '
                    '> "$d/ensemble.json";; esac\n')
    for path in (mpiexec, fake):
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    run = ex.plan(ex.QUICK, {})[0]
    out = tmp_path / "runs"
    folder = out / run.name
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "step_00000008.pt").touch()  # cut after a checkpoint
    (folder / "experiment.json").write_text(json.dumps(
        {"args": run.args(), "provenance": "commit `0ld0ld0`"}))
    assert ex.execute(run, out, mpiexec=str(mpiexec), python=str(fake), log=lambda _: None)
    assert (folder / "checkpoints" / "step_00000008.pt").exists()  # resumed, not started again
    result = ex.read_results(out, [run])[run.name]
    now = rep.provenance()
    assert result["earlier_provenance"] == ["commit `0ld0ld0`"] and result["provenance"] == now
    code = next(line for line in rep._header(ex.QUICK, [run], {run.name: result})
                if line.startswith("Code: "))
    assert "0ld0ld0" in code and now.split("`")[1] in code
    # a run started afresh (other arguments) carries no earlier code
    (folder / "experiment.json").write_text(json.dumps({"args": ["other"], "provenance": "x"}))
    assert ex.execute(run, out, mpiexec=str(mpiexec), python=str(fake), log=lambda _: None)
    assert "earlier_provenance" not in ex.read_results(out, [run])[run.name]


def test_provenance_names_the_commit_and_whole_paths():
    text = rep.provenance()
    assert text.startswith("commit `")
    for path in text.split("`")[3::2]:  # the paths after the commit hash
        assert path.split("/")[0] in ("hpcsgd", "tools", "jobs"), text


def test_the_collapsed_ensembles_launcher_is_the_mpiexec_alone():
    # hpcsgd.collapsed_ensemble runs [*launcher, its own interpreter, "-m", ...]: a launcher
    # that named the interpreter as well ran "python python -m hpcsgd.train" (the full set's
    # cyclic run failed so, 2026-12-06)
    import shlex
    run = pl.cyclic_runs(ex.QUICK)[0]
    (cmd,) = ex.commands(run, Path("/out"), "MPIEXEC", "/venv/bin/python")
    assert cmd[:3] == ["/venv/bin/python", "-m", "hpcsgd.collapsed_ensemble"]
    assert shlex.split(cmd[cmd.index("--launcher") + 1]) == ["MPIEXEC", "-n", str(ex.RANKS)]


def test_a_run_cut_short_resumes_from_its_checkpoint_to_the_uncut_numbers(tmp_path):
    """Two real `mpiexec -n 4` runs of the same command: one uncut, one cut after its first
    epoch (the files a kill after that epoch's checkpoint leaves). The driver must resume
    the cut one, not start it again, and end with the uncut run's records and result."""
    run = _tiny_run(tmp_path)
    venv = Path(sys.executable).parent
    kw = dict(mpiexec=str(venv / "mpiexec"), python=sys.executable, log=lambda _: None)
    uncut, cut = tmp_path / "uncut", tmp_path / "cut"
    for out in (uncut, cut):
        assert ex.execute(run, out, **kw), (out / run.name / "stdout.log").read_text()[-3000:]
    folder = cut / run.name
    ckpts = sorted((folder / "checkpoints").glob("*.pt"))
    assert ckpts, "no epoch checkpoint"  # epoch 1's (the end has final.pt)
    first = int(ckpts[0].stem.split("_")[-1])
    for path in (folder / "summary.json", folder / "test_eval.json", folder / "final.pt", *ckpts[1:]):
        path.unlink()
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    cut_at = next(i for i, line in enumerate(lines)  # the first record of the second epoch
                  if json.loads(line).get("step", 0) > first and '"tag": "train"' in line)
    (folder / "metrics.jsonl").write_text("\n".join(lines[:cut_at + 1]) + "\n")
    assert run.name not in ex.read_results(cut, [run])
    assert ex.execute(run, cut, **kw), (folder / "stdout.log").read_text()[-3000:]
    starts = plots.records(cut, run.name, "start")
    assert [s["resumed_from"] is not None for s in starts] == [False, True]
    assert starts[1]["step"] == first
    for tag in ("train", "eval", "epoch"):
        fields = {"train": ("step", "loss", "lr"), "eval": ("step", "top1"), "epoch": ("epoch", "loss")}[tag]
        a = [[r[f] for f in fields] for r in plots.records(uncut, run.name, tag)]
        b = [[r[f] for f in fields] for r in plots.records(cut, run.name, tag)]
        assert a == b and a, tag
    a, b = ex.read_results(uncut, [run])[run.name], ex.read_results(cut, [run])[run.name]
    assert (a["top1"], a["test_top1"]) == (b["top1"], b["test_top1"])
    # the trainer's summary carries the wall time saved in the checkpoint it resumed from;
    # the run's time is each process's own (its records time it from its own start), once
    logged = [r["time"] for r in plots.read_metrics(folder / "metrics.jsonl")]
    times = [logged[:cut_at + 1], logged[cut_at + 1:]]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["wall_time_s"] > max(times[1]) + 0.5  # it carried the checkpoint's
    assert b["wall_time_s"] == pytest.approx(max(times[0]) + max(times[1]), abs=0.5)
    # cut during the test evaluation: training is finished (final.pt, summary.json) and its
    # last epoch has no checkpoint, so resuming would train that epoch again; only the test
    # evaluation runs
    (folder / "test_eval.json").unlink()
    log = (folder / "metrics.jsonl").read_text()
    assert ex.execute(run, cut, **kw), (folder / "stdout.log").read_text()[-3000:]
    assert (folder / "metrics.jsonl").read_text() == log
    assert ex.read_results(cut, [run])[run.name]["test_top1"] == a["test_top1"]


def test_records_of_a_resumed_run_keep_the_later_copy_of_each_step(tmp_path):
    rows = [{"tag": "start", "step": 0, "resumed_from": None},
            *({"tag": "train", "step": s, "loss": 1.0} for s in (1, 2, 3, 4)),
            {"tag": "start", "step": 2, "resumed_from": "ckpt_2.pt"},
            *({"tag": "train", "step": s, "loss": 0.5} for s in (3, 4, 5)),
            {"tag": "start", "step": 0, "resumed_from": None},  # started again from nothing
            {"tag": "train", "step": 1, "loss": 0.1}]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:9]))
    assert [(r["step"], r["loss"]) for r in plots.records(tmp_path, "r", "train")] == \
        [(1, 1.0), (2, 1.0), (3, 0.5), (4, 0.5), (5, 0.5)]
    (tmp_path / "r" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [(r["step"], r["loss"]) for r in plots.records(tmp_path, "r", "train")] == [(1, 0.1)]
