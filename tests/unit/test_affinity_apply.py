"""The plan applied inside real ranks (mpiexec): OpenMP team, communication thread, decode
workers, the user's settings kept, a plan that cannot fit refused on every rank."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from hpcsgd.config import load_config
from hpcsgd.run.world import Refused, init_world

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
CORES = sorted(os.sched_getaffinity(0))

pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                reason="launches its own mpiexec (not from inside one)")

PROBE = r'''
import json, os, sys
import torch
from hpcsgd.affinity.apply import apply_plan
from hpcsgd.affinity.openmp import thread_affinities
from hpcsgd.comm.engine import CommEngine
from hpcsgd.config import load_config
from hpcsgd.run.world import init_world

def cpu_ticks():
    out = {}
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[int(tid)] = int(fields[11]) + int(fields[12])  # utime + stime
    return out

world = init_world()
cfg = load_config(None, sys.argv[1:])
placement = apply_plan(cfg, world)
engine = CommEngine(placement.comm(cfg.comm).comm_cores)
before = cpu_ticks()
x = torch.randn(16, 32, 64, 64)
conv = torch.nn.Conv2d(32, 32, 3, padding=1)
for _ in range(20):
    conv(x).sum().backward()
after = cpu_ticks()
info = {"rank": world.rank, "threads": torch.get_num_threads(),
        "main": sorted(os.sched_getaffinity(0)), "team": placement.team,
        "affinity": thread_affinities(), "busy": {t: after[t] - before.get(t, 0) for t in after},
        "comm": sorted(os.sched_getaffinity(engine.native_id)), "table": placement.table}
engine.close()
infos = world.comm.gather(info)
if world.rank == 0:
    print("RESULT " + json.dumps(infos))
'''


def _probe(tmp_path, ranks, *options, env=None):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("PMI_", "MPI", "HYDRA", "HPCSGD_EXPECT", "OMP_", "KMP_"))}
    res = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, str(script), *options],
                         env={**clean, **(env or {})}, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    (line,) = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


@pytest.mark.skipif(len(CORES) < 2, reason="needs 2 cores")
def test_one_rank_pins_the_openmp_team_one_thread_per_core_and_torch_uses_it(tmp_path):
    (info,) = _probe(tmp_path, 1)
    assert info["threads"] == len(CORES)
    assert info["main"] == CORES  # the main thread (OpenMP thread 0) keeps the compute set
    pinned = {int(tid): cpu for tid, cpu in info["team"].items() if cpu >= 0}
    assert sorted(pinned.values()) == CORES[1:]  # threads 1.. one per core
    for tid, cpu in pinned.items():
        assert info["affinity"][str(tid)] == [cpu]
        assert info["busy"][str(tid)] > 0  # torch's convolutions ran on the pinned thread
    assert info["comm"] == CORES  # no dedicated comm core on a small node: shares the set
    assert "core plan (auto" in info["table"]


@pytest.mark.skipif(len(CORES) < 2, reason="needs 2 cores")
def test_two_ranks_get_disjoint_cores(tmp_path):
    infos = _probe(tmp_path, 2)
    mains = [set(i["main"]) for i in infos]
    assert all(len(m) == len(CORES) // 2 for m in mains) and not mains[0] & mains[1]
    assert all(i["threads"] == len(CORES) // 2 for i in infos)
    assert all(set(i["comm"]) == set(i["main"]) for i in infos)
    lines = infos[0]["table"].splitlines()
    rows = [ln.split() for ln in lines[3:] if not ln.startswith("  ")]  # notes are indented
    assert [r[1] for r in rows] == ["0", "1"]  # one table row per rank, printed at rank 0
    assert "OpenMP threads wait:" in lines[-1]
    assert infos[1]["table"] == ""  # only rank 0 has the table


@pytest.mark.skipif(len(CORES) < 2, reason="needs 2 cores")
def test_dedicated_comm_core_and_the_users_omp_num_threads_is_kept(tmp_path):
    (info,) = _probe(tmp_path, 1, "--cluster.comm_cores_per_rank=1",
                     env={"OMP_NUM_THREADS": "2"})
    assert info["main"] == CORES[:-1] and info["comm"] == CORES[-1:]
    assert info["threads"] == 2  # the plan says 1; the environment's 2 is kept
    assert "OMP_NUM_THREADS=2 is set in the environment: kept (plan: 1)" in info["table"]
    pinned = [cpu for cpu in info["team"].values() if cpu >= 0]
    assert pinned == CORES[:1]  # the second thread shares the one compute core


def test_a_plan_that_cannot_fit_is_refused_on_every_rank():
    world = init_world()
    cfg = load_config(None, [f"--cluster.comm_cores_per_rank={len(CORES)}"])
    from hpcsgd.affinity.apply import apply_plan
    with pytest.raises(Refused, match=rf"cluster.comm_cores_per_rank = {len(CORES)} \+ "
                                      r"cluster.data_cores_per_rank = 0 leave no compute core"):
        apply_plan(cfg, world)
    assert sorted(os.sched_getaffinity(0)) == CORES  # nothing was applied


def test_unpinned_leaves_placement_to_the_os():
    world = init_world()
    cfg = load_config(None, ["--cluster.pin=false", "--cluster.nodes=4"])
    from hpcsgd.affinity.apply import apply_plan
    placement = apply_plan(cfg, world)
    assert not placement.pinned and placement.comm(cfg.comm) is cfg.comm
    assert "cluster.pin = false" in placement.table and "(not pinned)" in placement.table
    assert "cluster.nodes = 4 but the job runs on 1 node(s)" in placement.table
    assert sorted(os.sched_getaffinity(0)) == CORES


def test_user_openmp_binding_is_kept_and_comm_cores_from_the_config_win():
    from hpcsgd.affinity.apply import Placement, mask_group, user_settings
    plan_env = {"OMP_NUM_THREADS": "2", "OMP_PLACES": "{0},{1}", "OMP_PROC_BIND": "close"}
    kept, notes = user_settings(plan_env, "gnu", env={"OMP_PLACES": "cores",
                                                      "KMP_AFFINITY": "compact"})
    assert kept == {"OMP_PLACES": "cores"}  # libgomp ignores KMP_AFFINITY
    assert "not re-bound" in notes[0]
    kept, _ = user_settings(plan_env, "intel", env={"KMP_AFFINITY": "compact",
                                                    "OMP_NUM_THREADS": "2"})
    assert kept == {"KMP_AFFINITY": "compact"}  # same value as the plan's: nothing to keep
    p = Placement(True, None, 1, [1], [0])
    cfg = load_config(None, ["--comm.comm_cores=[0]"])
    assert p.comm(cfg.comm).comm_cores == [0]
    assert p.comm(load_config(None, []).comm).comm_cores == [1]
    assert mask_group([[0, 1], [0, 1], [2], [0, 1]], 3) == (2, 3)
    assert mask_group([[0, 1], [0, 1], [2], [0, 1]], 2) == (0, 1)


def test_decode_workers_go_to_the_data_cores():
    from hpcsgd.affinity.apply import Placement

    class Loader:  # the two members of hpcsgd.data.loader.TrainLoader the placement uses
        workers = 2
        pinned_to = None

        def set_worker_affinity(self, cpu_sets):
            self.pinned_to = cpu_sets

    loader = Loader()
    Placement(True, None, 1, [3], [2]).pin_workers(loader)
    assert loader.pinned_to == [[2]]
    loader = Loader()
    Placement(False, None, 1, [], []).pin_workers(loader)
    assert loader.pinned_to is None


def test_memory_hbm_on_a_node_without_high_bandwidth_memory_is_reported(tmp_path):
    # this VM has one NUMA node with CPUs (as a Cache-mode KNL): nothing to prefer, said so
    (info,) = _probe(tmp_path, 1, "--cluster.memory=hbm")
    assert 'cluster.memory = "hbm": no high-bandwidth memory node here' in info["table"]
    assert info["threads"] >= 1
