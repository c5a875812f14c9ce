"""The multi-node paths end to end on one machine: 4 ranks as 2 simulated nodes x 2 ranks.

MPICH's MPIR_CVAR_NUM_CLIQUES=2 makes the library treat the ranks of one host as 2 nodes
(round robin: ranks 0 and 2 on one, 1 and 3 on the other): MPI_Comm_split_type(SHARED)
returns node communicators of 2 ranks, and messages between the cliques leave the
shared-memory path. So the trainer sees 2 nodes, and runs the hierarchical allreduce's
multi-node branch (node-local sums in each node's shared memory, the node leaders' allreduce
between the nodes, the result shared again) and stages the LMDBs once per node. What the
simulation cannot make separate is the host itself: one file system and one /dev/shm, so
each node stages into its own folder (data.stage_dir = ".../node{node}", hpcsgd/data/
staging.py), and both nodes share the 2 cores (each node's core plan is made for the whole
host).

Compared with the same run on 1 node (4 ranks, the same hierarchical allreduce): the same
samples at every step, the same initial weights, the gradients of the same ranks averaged;
only the order of the fp32 sum differs: one node adds the 4 ranks' slots in slot order,
((g0 + g1) + g2) + g3, where the 2 nodes add (g0 + g2) and (g1 + g3) then sum the two
(the division by 4 is exact). A rounding-level difference per step, so the losses agree to a
tolerance, not bit for bit: measured on 2026-12-06, 16 steps, the largest relative difference
of a logged loss was 6.7e-8 (a few fp32 ulps; 10 of the 16 equal), the test allows 1e-6.

A checkpoint written on the 2 nodes (after epoch 1) resumes on 2 nodes to the same losses as
the uninterrupted 2-node run, bit for bit.

It launches its own mpiexec (with the clique variable), so it runs in the plain pytest run of
tools/test.sh, like tests/unit/test_stall.py; LeNet on a tiny LMDB of Fashion-MNIST-shaped
records (28 x 28 grey, 10 classes; tests/helpers.py).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from hpcsgd.run.metrics import read_metrics
from helpers import tiny_dataset

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")

# test-only instrumentation of the launched ranks: what each one staged and reduced
SCRIPT = """
import atexit, json, sys
from mpi4py import MPI
import hpcsgd.comm.hierarchical as hierarchical
import hpcsgd.data.staging as staging

seen = {"staged": [], "calls": 0, "inter_calls": 0}
real_stage, real_average = staging.stage_lmdbs, hierarchical.HierarchicalAllreduce.average_

def stage_lmdbs(*args, **kwargs):
    paths = real_stage(*args, **kwargs)
    seen["staged"] = [str(p) for p in paths]
    return paths

def average_(self, *args, **kwargs):
    seen.update(local_size=self.local_size, size=self.size, leader=self.inter is not None)
    seen["calls"] += 1
    seen["inter_calls"] += int(self.inter is not None and self.size > self.local_size)
    return real_average(self, *args, **kwargs)

staging.stage_lmdbs, hierarchical.HierarchicalAllreduce.average_ = stage_lmdbs, average_
rank = MPI.COMM_WORLD.rank
atexit.register(lambda: open(f"seen{rank}.json", "w").write(json.dumps(seen)))
from hpcsgd.train import main
sys.exit(main(sys.argv[1:]))
"""


def _train(tmp_path: Path, name: str, cliques: int, *options: str):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_"))}
    if cliques > 1:
        env["MPIR_CVAR_NUM_CLIQUES"] = str(cliques)
    work = tmp_path / name
    work.mkdir()
    (work / "job.py").write_text(SCRIPT)
    res = subprocess.run(
        [MPIEXEC, "-n", "4", sys.executable, "job.py", str(tmp_path / "job.toml"),
         f"--run.name={name}", f"--data.stage_dir={tmp_path / name / 'stage' / 'node{node}'}",
         *options],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.returncode, res.stdout[-2000:], res.stderr[-4000:])
    seen = [json.loads((work / f"seen{r}.json").read_text()) for r in range(4)]
    return res.stdout, seen, read_metrics(tmp_path / "runs" / name / "metrics.jsonl")


def _core_plan(stdout: str) -> list[dict]:
    """The rows of the core plan table rank 0 prints (hpcsgd/affinity/apply.py)."""
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:3] == ["host", "rank", "local"])
    names = lines[head].split()
    rows = []
    for line in lines[head + 2:]:
        cells = line.split()
        if len(cells) < len(names) or not cells[1].isdigit():
            break
        rows.append(dict(zip(names, cells)))
    return rows


def test_two_simulated_nodes_stage_reduce_resume_and_match_one_node(tmp_path):
    tiny_dataset(tmp_path / "data")
    (tmp_path / "job.toml").write_text(
        f'[data]\npath = "{tmp_path / "data"}"\naugment = false\nstage_keep = true\n'
        '[train]\nepochs = 2.0\nglobal_batch = 64\nlog_every_steps = 1\n'
        'eval_every_epochs = 1.0\n[optim]\nbase_lr = 0.05\n[compute]\nthreads = 1\n'
        'precision = "fp32"\n[checkpoint]\nevery_epochs = 1.0\n'
        f'[comm]\nhierarchical = "on"\nstall_timeout_s = 120.0\n'
        f'[run]\nout_dir = "{tmp_path / "runs"}"\n')
    out2, seen2, metrics2 = _train(tmp_path, "two_nodes", cliques=2)
    out1, seen1, metrics1 = _train(tmp_path, "one_node", cliques=1)

    # the world: 2 nodes of 2 ranks (MPICH's cliques: ranks 0, 2 | 1, 3); 1 node of 4
    assert "4 ranks on 2 node(s)" in out2, out2[:2000]
    assert "4 ranks on 1 node(s)" in out1, out1[:2000]
    assert [s["local_size"] for s in seen2] == [2, 2, 2, 2]
    assert [s["leader"] for s in seen2] == [True, True, False, False]

    # each node made its own core plan: its 2 ranks split the host's cores between them (the
    # plan is per node, by local rank), so the two nodes' leaders got the same cores
    plan2 = _core_plan(out2)
    assert [(p["rank"], p["local"]) for p in plan2] == [("0", "0"), ("1", "0"), ("2", "1"),
                                                         ("3", "1")], plan2
    by_local = {}
    for p in plan2:
        by_local.setdefault(p["local"], set()).add(p["compute"])
    assert all(len(cores) == 1 for cores in by_local.values()), plan2  # same plan on each node
    assert by_local["0"] != by_local["1"], plan2  # a node's ranks do not share cores
    plan1 = _core_plan(out1)
    assert [p["local"] for p in plan1] == ["0", "1", "2", "3"], plan1

    # each node staged its own copy, and its ranks read that copy
    stage = tmp_path / "two_nodes" / "stage"
    for node, ranks in (("node0", (0, 2)), ("node1", (1, 3))):
        copies = sorted(p.name for p in (stage / node).iterdir())
        assert [c.split("-")[0] for c in copies] == ["test", "train"], copies
        for c in copies:
            assert (stage / node / c / "data.mdb").stat().st_size > 0
            assert (stage / node / c / "staged-from.json").is_file()
        for r in ranks:
            assert [Path(p).parent for p in seen2[r]["staged"]] == [stage / node] * 2
    assert sorted(p.name for p in stage.iterdir()) == ["node0", "node1"]

    # the hierarchical allreduce ran its multi-node branch: every bucket of every step went
    # through the leaders' allreduce on ranks 0 and 1, and through none on the 1-node run
    steps = 2 * 512 // 64
    assert all(s["calls"] >= steps and s["calls"] == seen2[0]["calls"] for s in seen2)
    assert [s["inter_calls"] for s in seen2] == [seen2[0]["calls"]] * 2 + [0, 0]
    assert [s["inter_calls"] for s in seen1] == [0] * 4

    # the same training up to the order of the fp32 gradient sums (see the module doc)
    train2, train1 = [m for m in metrics2 if m["tag"] == "train"], \
        [m for m in metrics1 if m["tag"] == "train"]
    assert [m["step"] for m in train2] == [m["step"] for m in train1] == \
        list(range(1, steps + 1))
    assert train2[0]["loss"] == train1[0]["loss"]  # step 1: the same weights, the same data
    for a, b in zip(train2, train1):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=0), (a["step"], a, b)
    evals2, evals1 = [m for m in metrics2 if m["tag"] == "eval"], \
        [m for m in metrics1 if m["tag"] == "eval"]
    assert [e["count"] for e in evals2] == [e["count"] for e in evals1] == [200, 200]
    for a, b in zip(evals2, evals1):
        assert abs(a["top1"] - b["top1"]) <= 1 / 200  # at most one image decided otherwise

    # a checkpoint written on 2 nodes resumes on 2 nodes exactly: steps 9-16 bit for bit
    checkpoint = tmp_path / "runs" / "two_nodes" / "checkpoints" / f"step_{steps // 2:08d}.pt"
    _, _, resumed = _train(tmp_path, "two_nodes_resumed", 2, f"--checkpoint.resume={checkpoint}")
    assert [(m["step"], m["loss"]) for m in resumed if m["tag"] == "train"] == \
        [(m["step"], m["loss"]) for m in train2[steps // 2:]]
    assert [m["top1"] for m in resumed if m["tag"] == "eval"] == [evals2[-1]["top1"]]
