"""The affinity tuner: candidate layouts, ranking, the default-vs-best check, the snippet, and
one real step-benchmark run through mpiexec."""
import os
import shutil
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from hpcsgd.bench import tuner
from hpcsgd.config import load_config

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))


def test_candidates_for_1_to_4_ranks_on_2_cores():
    cands = tuner.candidates(2, ranks=(1, 2, 3, 4), buckets=(4.0, 25.0))
    by_ranks = {r: [c for c in cands if c.ranks == r] for r in (1, 2, 3, 4)}
    for r, cs in by_ranks.items():
        assert sum(c.default for c in cs) == 1, r  # exactly one default layout per rank count
        assert any(c.options == ("--cluster.pin=false", "--compute.threads=1") for c in cs)
        assert any(c.options == ("--comm.bucket_mb=4",) for c in cs)
        assert not any("bucket_mb=25" in o for c in cs for o in c.options)  # 25 is the default
    one = {c.name: c for c in by_ranks[1]}
    assert {"pinned, 1 thread(s)", "pinned, 2 thread(s)", "unpinned, 2 thread(s)",
            "pinned, 1 dedicated comm core + 1 compute"} <= set(one)
    assert one["pinned, 2 threads, OMP_WAIT_POLICY=passive"].env == (("OMP_WAIT_POLICY",
                                                                       "PASSIVE"),)
    assert "unpinned, 2 thread(s)" in {c.name for c in by_ranks[2]}  # 4 threads on 2 cores
    assert "unpinned, 2 thread(s)" not in {c.name for c in by_ranks[3]}  # not 6 on 2
    assert len({c.key for c in cands}) == len(cands)
    for c in cands:  # every layout is a valid configuration
        load_config(None, ["--train.global_batch=24", *c.options])


def _result(key, ranks, name, options, step, default=False):
    return {"key": key, "ranks": ranks, "name": name, "options": options, "default": default,
            "workload": ["--batch", "24"], "ok": True, "step_s": step, "threads": 1,
            "times": [step - 0.01, step, step + 0.01]}


def test_summary_ranks_by_median_over_rounds_and_checks_the_default():
    results = [
        _result("1 x d", 1, "d", [], 1.00, True), _result("1 x d", 1, "d", [], 1.20, True),
        _result("1 x d", 1, "d", [], 1.10, True),
        _result("1 x u", 1, "u", ["--cluster.pin=false"], 1.02),
        _result("2 x d", 2, "d", [], 0.90, True),
        _result("2 x b", 2, "b", ["--comm.bucket_mb=4"], 0.80),
        {"key": "2 x x", "ok": False, "error": "exit 1"},
    ]
    rows = tuner.summarize(results)
    assert [r["key"] for r in rows] == ["2 x b", "2 x d", "1 x u", "1 x d"]
    d = rows[3]  # pooled median of 9 steps, fastest step, spread of the 3 rounds' medians
    assert (d["step_s"], d["fastest_s"], d["min_s"], d["max_s"], d["rounds"], d["steps"]) == (
        pytest.approx(1.10), pytest.approx(0.99), 1.00, 1.20, 3, 9)
    checks = {c["ranks"]: c for c in tuner.default_vs_best(rows)}
    assert checks[1]["ratio"] == pytest.approx(1.10 / 1.02) and checks[1]["best"] == "u"
    assert checks[2]["ratio"] == pytest.approx(0.90 / 0.80)
    table = tuner.ranked_table(rows)
    assert table.splitlines()[2].split()[:2] == ["1", "2"]  # rank 1: 2 ranks, 4 MB buckets
    assert "d *" in table  # the default is marked


def test_noisy_runs_are_left_out_and_foreign_load_is_computed():
    quiet = {**_result("1 x d", 1, "d", [], 1.0, True), "foreign": 0.02}
    noisy = {**_result("1 x d", 1, "d", [], 3.0, True), "foreign": 0.60}
    unknown = _result("1 x d", 1, "d", [], 5.0, True)  # no measurement: not known quiet
    (row,) = tuner.summarize([quiet, noisy, unknown], max_foreign=0.1)
    assert row["rounds"] == 1 and row["step_s"] == pytest.approx(1.0)
    assert tuner.summarize([quiet, noisy, unknown])[0]["rounds"] == 3
    # 2 CPUs for 10 s = 20 CPU-seconds; 7 busy, 5 of them ours: others took 10%
    assert tuner.foreign_load(7.0, 5.0, 10.0, 2) == pytest.approx(0.10)
    assert tuner.foreign_load(4.0, 5.0, 10.0, 2) == 0.0
    stat = "cpu  100 0 50 1000 10 5 5 40 0 0\ncpu0 1 2 3 4\n"
    assert tuner.cpu_busy_s(stat) * os.sysconf("SC_CLK_TCK") == 200  # all but idle + iowait


def test_snippet_is_a_loadable_config(tmp_path):
    best = {"ranks": 2, "name": "pinned plan, 4 MB buckets", "step_s": 0.5, "rounds": 3,
            "batch": 24, "options": ["--comm.bucket_mb=4", "--cluster.pin=false",
                                     "--cluster.node_type=auto"]}
    path = tmp_path / "best.toml"
    path.write_text(tuner.snippet(best, "tools/affinity.py tune"))
    cfg = load_config(path)
    assert (cfg.comm.bucket_mb, cfg.cluster.pin, cfg.cluster.ranks_per_node) == (4.0, False, 2)
    assert cfg.cluster.node_type == "auto"


@pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                    reason="launches its own mpiexec (not from inside one)")
def test_one_candidate_runs_the_step_benchmark():
    c = tuner.Candidate(1, "default: pinned plan")
    workload = ["--model", "cifar_resnet20", "--classes", "10", "--image-size", "32",
                "--batch", "4", "--warmup", "1", "--steps", "3", "--budget-s", "0"]
    rec = tuner.run_candidate(c, workload, mpiexec=MPIEXEC, cwd=ROOT, timeout=180)
    assert rec["ok"], rec.get("error")
    assert rec["ranks"] == 1 and rec["pinned"]
    assert len(rec["times"]) == 2  # --budget-s 0: the minimum of 2 timed steps
    assert rec["step_s"] > 0 and "core plan" in rec["table"]


def test_a_candidate_that_cannot_start_is_recorded_not_raised(tmp_path):
    rec = tuner.run_candidate(tuner.Candidate(2, "x"), ["--batch", "4"],
                              mpiexec=str(tmp_path / "no-mpiexec"), cwd=tmp_path)
    assert not rec["ok"] and "cannot start" in rec["error"] and rec["key"] == "2 x x"
