"""Memory placement (hpcsgd/affinity/memory.py): which NUMA node is high-bandwidth memory on
a Flat-mode KNL (fake sysfs trees), and the real set_mempolicy / get_mempolicy calls on this
machine, on a thread of their own so that the test process keeps its policy."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hpcsgd.affinity.memory import (MPOL_DEFAULT, MPOL_PREFERRED, nearest_hbm_node,
                                    prefer_node, read_numa_nodes, thread_policy)
from hpcsgd.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def _tree(tmp_path, nodes, ids=None, bandwidth=None):
    """nodes: [(cpulist, MemTotal kB, distances)] -> a fake /sys/devices/system/node, with
    node ids `ids` (default 0..) and HMAT read bandwidths (MB/s) where given."""
    ids = ids or list(range(len(nodes)))
    for i, (cpus, kib, dist) in zip(ids, nodes):
        d = tmp_path / f"node{i}"
        d.mkdir(parents=True)
        (d / "cpulist").write_text(cpus + "\n")
        (d / "meminfo").write_text(f"Node {i} MemTotal:       {kib} kB\nNode {i} MemFree: 1 kB\n")
        (d / "distance").write_text(" ".join(map(str, dist)) + "\n")
        if bandwidth:
            (d / "access0" / "initiators").mkdir(parents=True)
            (d / "access0" / "initiators" / "read_bandwidth").write_text(f"{bandwidth[i]}\n")
    return read_numa_nodes(tmp_path)


def test_flat_quadrant_knl_prefers_its_mcdram_node(tmp_path):
    nodes = _tree(tmp_path, [("0-271", 98_000_000, (10, 31)), ("", 16_000_000, (31, 10))])
    assert [(n.node, len(n.cpus), n.distance) for n in nodes] == [(0, 272, {0: 10, 1: 31}),
                                                                 (1, 0, {0: 31, 1: 10})]
    assert nearest_hbm_node(nodes, range(0, 64)) == 1


def test_flat_snc4_knl_takes_the_mcdram_of_the_ranks_own_quadrant(tmp_path):
    # nodes 0-3: DDR with a quarter of the cores each; 4-7: their MCDRAM (distance 31 to the
    # own quadrant's, 41 to the others')
    ddr = [(f"{17 * q}-{17 * q + 16}", 24_000_000,
            tuple(10 if j == q else 21 for j in range(4)) + tuple(31 if j == q else 41
                                                                   for j in range(4)))
           for q in range(4)]
    hbm = [("", 4_000_000, tuple(31 if j == q else 41 for j in range(4))
            + tuple(10 if j == q else 41 for j in range(4))) for q in range(4)]
    nodes = _tree(tmp_path, ddr + hbm)
    assert [nearest_hbm_node(nodes, [17 * q + 3]) for q in range(4)] == [4, 5, 6, 7]


def test_distances_are_listed_by_online_node_not_by_id(tmp_path):
    # nodes 0, 2, 3 online (1 missing): node 0's distance file "10 41 31" is to 0, 2, 3
    nodes = _tree(tmp_path, [("0-3", 8_000_000, (10, 41, 31)), ("", 4_000_000, (41, 10, 41)),
                             ("", 4_000_000, (31, 41, 10))], ids=[0, 2, 3])
    assert nodes[0].distance == {0: 10, 2: 41, 3: 31}
    assert nearest_hbm_node(nodes, [1]) == 3


def test_a_slower_cpu_less_node_is_not_high_bandwidth_memory(tmp_path):
    # HMAT says: the CPU-less node reads at 20 GB/s against 90 GB/s for DDR (a CXL
    # expander, persistent memory): not preferred; MCDRAM at 400 GB/s is
    layout = [("0-63", 96_000_000, (10, 31)), ("", 16_000_000, (31, 10))]
    slow = _tree(tmp_path / "cxl", layout, bandwidth={0: 90_000, 1: 20_000})
    assert nearest_hbm_node(slow, [0]) is None
    fast = _tree(tmp_path / "mcdram", layout, bandwidth={0: 90_000, 1: 400_000})
    assert nearest_hbm_node(fast, [0]) == 1


def test_cache_mode_or_no_hbm_gives_none(tmp_path):
    nodes = _tree(tmp_path, [("0-67", 98_000_000, (10,))])
    assert nearest_hbm_node(nodes, [0]) is None
    assert nearest_hbm_node([], [0]) is None


def test_preferred_policy_is_the_threads_and_inherited_by_threads_it_starts():
    seen = {}

    def rank_main_thread():
        prefer_node(0)
        seen["self"] = thread_policy()
        child = threading.Thread(target=lambda: seen.setdefault("child", thread_policy()))
        child.start()
        child.join()

    t = threading.Thread(target=rank_main_thread)
    t.start()
    t.join()
    assert seen == {"self": (MPOL_PREFERRED, [0]), "child": (MPOL_PREFERRED, [0])}
    assert thread_policy() == (MPOL_DEFAULT, [])  # this thread's policy is untouched


def test_staging_the_data_set_is_placed_by_the_os_not_in_the_preferred_node(tmp_path):
    """The staged LMDB copy in tmpfs follows the writing thread's policy: it must not fill
    MCDRAM before the model allocates. The copy itself is replaced here by a probe that
    records the policy it runs under (the rest of build_loaders needs a real data set)."""
    import hpcsgd.data.staging as staging
    from hpcsgd.data import build_loaders
    from hpcsgd.run.world import init_world
    from mpi4py import MPI
    cfg = load_config(None, [f"--data.stage_dir={tmp_path}"])
    world = init_world(MPI.COMM_SELF)
    seen = {}

    class Probed(Exception):
        pass

    def probe(*args, **kwargs):
        seen["during"] = thread_policy()
        raise Probed

    def rank_main_thread():
        prefer_node(0)
        original, staging.stage_lmdbs = staging.stage_lmdbs, probe
        try:
            build_loaders(cfg, world, local_batch=4)
        except Probed:
            pass
        finally:
            staging.stage_lmdbs = original
        seen["after"] = thread_policy()

    t = threading.Thread(target=rank_main_thread)
    t.start()
    t.join()
    assert seen == {"during": (MPOL_DEFAULT, []), "after": (MPOL_PREFERRED, [0])}


def test_bind_team_sets_the_policy_on_every_openmp_thread():
    probe = r'''
import json, os, threading, torch
from hpcsgd.affinity.memory import prefer_node, thread_policy
from hpcsgd.affinity.openmp import bind_team
seen = {}
def on_thread():
    prefer_node(0)
    seen[threading.get_native_id()] = thread_policy()
cpus = sorted(os.sched_getaffinity(0))
team = bind_team(cpus, 3, on_thread=on_thread)
print(json.dumps({"team": len(team), "policies": list(seen.values())}))
'''
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["team"] == 3
    assert out["policies"] == [[MPOL_PREFERRED, [0]]] * 2  # threads 1 and 2 (0: the caller)


def test_cluster_memory_is_checked():
    assert load_config(None, ["--cluster.memory=hbm"]).cluster.memory == "hbm"
    with pytest.raises(ConfigError, match="cluster.memory = 'mcdram'"):
        load_config(None, ["--cluster.memory=mcdram"])
