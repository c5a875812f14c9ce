"""The core planner and topology discovery: pure functions, no MPI, no torch.

The presets must reproduce Codreanu et al. IV-E exactly: KNL 7250 = 64 OpenMP compute cores
+ the last 4 for communication, one rank; Skylake 8160 = per socket 22 compute threads + 2
communication cores, with 1 or 2 ranks per node. No plan may give two roles one core."""
import itertools
import os

import pytest

from hpcsgd.affinity.launch import cpu_mask, launcher_env, launcher_flags, rank_env
from hpcsgd.affinity.planner import (PRESETS, auto_comm_cores, openmp_env, overlaps,
                                     plan_node)
from hpcsgd.affinity.topology import (discover, format_cpulist, parse_cpulist, parse_lscpu,
                                      read_sysfs, synthetic)
from hpcsgd.config import ConfigError, load_config

KNL = PRESETS["knl-7250"].topology
SKX = PRESETS["skx-8160"].topology


def test_preset_topologies_are_the_papers_nodes():
    assert (len(KNL.sockets), len(KNL.cores), KNL.threads_per_core, len(KNL.cpus)) == (1, 68, 4, 272)
    assert KNL.cores[67].cpus == (67, 135, 203, 271)  # Linux numbering: siblings are +68
    assert SKX.cores_per_socket() == {0: 24, 1: 24}
    assert (SKX.threads_per_core, len(SKX.cpus), SKX.numa_nodes) == (2, 96, [0, 1])
    assert SKX.cores[24].socket == 1 and SKX.cores[24].cpus == (24, 72)


def test_knl_preset_is_64_compute_plus_the_last_4_cores_for_communication():
    plan = plan_node(KNL, ranks=PRESETS["knl-7250"].ranks_per_node, preset="knl-7250")
    (rank,) = plan.ranks
    assert rank.compute == tuple(range(64))
    assert rank.comm == (64, 65, 66, 67)
    assert rank.data == () and rank.threads == 64
    assert rank.mask == tuple(range(272))  # the rank owns the whole node
    assert overlaps(plan) == [] and plan.unused == []


def test_skx_preset_one_rank_is_22_compute_plus_2_comm_per_socket():
    (rank,) = plan_node(SKX, ranks=1, preset="skx-8160").ranks
    assert rank.compute == tuple(range(0, 22)) + tuple(range(24, 46))
    assert rank.comm == (22, 23, 46, 47)
    assert rank.threads == 44
    socket = {c.first: c.socket for c in SKX.cores}
    for s in (0, 1):
        assert sum(socket[c] == s for c in rank.compute) == 22
        assert sum(socket[c] == s for c in rank.comm) == 2


def test_skx_preset_two_ranks_one_per_socket():
    plan = plan_node(SKX, ranks=2, preset="skx-8160")
    r0, r1 = plan.ranks
    assert (r0.compute, r0.comm, r0.threads) == (tuple(range(22)), (22, 23), 22)
    assert (r1.compute, r1.comm, r1.threads) == (tuple(range(24, 46)), (46, 47), 22)
    assert r0.mask == tuple(range(24)) + tuple(range(48, 72))  # socket 0 with its siblings
    assert overlaps(plan) == [] and plan.unused == []


TOPOLOGIES = [KNL, SKX, synthetic("4s", sockets=4, cores_per_socket=12, threads_per_core=2,
                                  numa_per_socket=2),
              synthetic("small", sockets=1, cores_per_socket=2, threads_per_core=1)]


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda t: t.name)
def test_no_plan_gives_two_roles_or_two_ranks_the_same_core(topology):
    ncores = len(topology.cores)
    checked = 0
    for ranks, comm, data in itertools.product((1, 2, 3, 4, 8), (-1, 0, 1, 2, 3), (0, 1, 2)):
        try:
            plan = plan_node(topology, ranks=ranks, comm_cores=comm, data_cores=data)
        except ValueError as e:
            assert "leave no compute core" in str(e) or "cannot reserve cores" in str(e)
            continue
        checked += 1
        assert overlaps(plan) == [], (ranks, comm, data)
        for r in plan.ranks:
            assert r.compute and r.threads == (1 if r.shared else len(r.compute))
            assert set(r.compute + r.comm + r.data) <= set(r.mask)
        if ranks <= ncores:  # blocks are disjoint and cover the node
            masks = [set(r.mask) for r in plan.ranks]
            assert sum(map(len, masks)) == len(set().union(*masks)) == len(topology.cpus)
    assert checked > 10


def test_ranks_that_outnumber_the_cores_share_them_one_thread_each():
    plan = plan_node(TOPOLOGIES[-1], ranks=4)  # evenly: round-robin, one rank per core each
    assert [r.compute for r in plan.ranks] == [(0,), (1,), (0,), (1,)]
    assert all(r.shared and r.comm == () and r.threads == 1 for r in plan.ranks)
    assert overlaps(plan) == []
    plan = plan_node(TOPOLOGIES[-1], ranks=3)  # unevenly: all share both cores, the OS balances
    assert [r.compute for r in plan.ranks] == [(0, 1)] * 3
    assert all(r.shared and r.threads == 1 for r in plan.ranks) and overlaps(plan) == []
    with pytest.raises(ValueError, match="cannot reserve cores when 3 ranks share 2 core"):
        plan_node(TOPOLOGIES[-1], ranks=3, comm_cores=1)


def test_a_plan_that_leaves_no_compute_core_is_refused_naming_the_options():
    with pytest.raises(ValueError, match=r"cluster.comm_cores_per_rank = 1 \+ "
                                         r"cluster.data_cores_per_rank = 1 leave no compute"):
        plan_node(TOPOLOGIES[-1], ranks=1, comm_cores=1, data_cores=1)
    with pytest.raises(ValueError, match="cluster.node_type = 'knl'"):
        plan_node(KNL, ranks=1, preset="knl")


def test_data_cores_sit_before_the_communication_cores():
    (rank,) = plan_node(KNL, ranks=1, data_cores=4, preset="knl-7250").ranks
    assert rank.comm == (64, 65, 66, 67) and rank.data == (60, 61, 62, 63)
    assert rank.compute == tuple(range(60))


@pytest.mark.parametrize("cores, comm", [(1, 0), (2, 0), (7, 0), (8, 1), (24, 2), (48, 3),
                                         (68, 4)])
def test_auto_communication_cores(cores, comm):
    assert auto_comm_cores(cores) == comm


def test_auto_rules_on_a_skylake_node_split_the_comm_cores_over_both_sockets():
    (rank,) = plan_node(SKX, ranks=1).ranks  # auto: 48 cores -> 3, taken from the ends
    assert rank.comm == (22, 23, 47) and len(rank.compute) == 45


def test_openmp_environment_of_the_knl_plan():
    (rank,) = plan_node(KNL, ranks=1, preset="knl-7250").ranks
    gnu, intel = openmp_env(rank, "gnu"), openmp_env(rank, "intel")
    assert gnu["OMP_NUM_THREADS"] == "64" and gnu["OMP_PROC_BIND"] == "close"
    assert gnu["OMP_PLACES"].startswith("{0},{1},") and gnu["OMP_PLACES"].endswith(",{63}")
    assert intel["KMP_AFFINITY"] == ("granularity=fine,proclist=[" + ",".join(map(str, range(64)))
                                     + "],explicit")
    assert intel["KMP_BLOCKTIME"] == "1"
    assert set(rank_env(rank)) == {"OMP_NUM_THREADS", "OMP_PLACES", "OMP_PROC_BIND",
                                   "KMP_AFFINITY", "KMP_BLOCKTIME"}


def test_launcher_flags_bind_each_rank_to_its_block():
    plan = plan_node(SKX, ranks=2, preset="skx-8160")
    flags = launcher_flags(plan, nodes=256, program="python -m hpcsgd.train j.toml")
    socket0, socket1 = cpu_mask(plan.ranks[0].mask), cpu_mask(plan.ranks[1].mask)
    assert socket0 == "ffffff000000ffffff" and socket1 == "ffffff000000ffffff000000"
    assert f"--ntasks-per-node=2 --cpus-per-task=48 --cpu-bind=verbose,mask_cpu:0x{socket0},0x{socket1}" \
        in flags["srun"]
    assert flags["mpich"].startswith("mpiexec -n 512 -ppn 2 -bind-to user:0+1+")
    assert f"I_MPI_PIN_DOMAIN=[{socket0},{socket1}]" in flags["intelmpi"]
    assert "--map-by ppr:2:node:PE=24 --bind-to core" in flags["openmpi"]
    env = launcher_env(plan)
    assert env["mlsl"] == {"MLSL_NUM_SERVERS": "2", "MLSL_SERVER_AFFINITY": "22,23,46,47"}
    assert env["openmp"]["OMP_NUM_THREADS"] == "22"
    knl = launcher_env(plan_node(KNL, ranks=1, preset="knl-7250"))
    assert knl["mlsl"] == {"MLSL_NUM_SERVERS": "4", "MLSL_SERVER_AFFINITY": "64,65,66,67"}


def test_cpulist_round_trip():
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert format_cpulist([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    assert format_cpulist([]) == "-"
    with pytest.raises(ValueError, match="bad CPU list"):
        parse_cpulist("0-x")


LSCPU = """# The following is the parsable format
# CPU,Core,Socket,Node
0,0,0,0
1,1,0,0
2,2,1,1
3,3,1,1
4,0,0,0
5,1,0,0
6,2,1,1
7,3,1,1
"""


def test_parse_lscpu_groups_hardware_threads_into_cores():
    topo = parse_lscpu(LSCPU)
    assert [c.cpus for c in topo.cores] == [(0, 4), (1, 5), (2, 6), (3, 7)]
    assert topo.sockets == [0, 1] and topo.numa_nodes == [0, 1] and topo.threads_per_core == 2
    assert parse_lscpu("0,0,0,\n1,1,0,\n").numa_nodes == [0]  # no NUMA: empty field
    with pytest.raises(ValueError, match="lscpu line 1"):
        parse_lscpu("cpu0 core0")


def test_read_sysfs_from_a_fake_tree(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "online").write_text("0-3\n")
    for cpu, (core, socket) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        d = tmp_path / "cpu" / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "core_id").write_text(f"{core}\n")
        (d / "physical_package_id").write_text(f"{socket}\n")
    for node, cpus in ((0, "0-1"), (1, "2-3")):
        (tmp_path / "node" / f"node{node}").mkdir(parents=True)
        (tmp_path / "node" / f"node{node}" / "cpulist").write_text(cpus + "\n")
    topo = read_sysfs(tmp_path)
    assert topo.cores_per_socket() == {0: 2, 1: 2}
    assert [(c.socket, c.node, c.cpus) for c in topo.cores] == [
        (0, 0, (0,)), (0, 0, (1,)), (1, 1, (2,)), (1, 1, (3,))]
    assert topo.restrict({1, 2}).cpus == [1, 2]


def test_read_sysfs_keeps_the_cores_of_different_dies_apart(tmp_path):
    """Two dies in one package, core_id 0-1 on each, 2 threads per core (CPU c and c + 4):
    the sibling lists, not core_id, say which CPUs share a core."""
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "online").write_text("0-7\n")
    for cpu in range(8):
        core = cpu % 4  # physical cores 0-3: die 0 has 0-1, die 1 has 2-3
        d = tmp_path / "cpu" / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "core_id").write_text(f"{core % 2}\n")  # repeats on each die
        (d / "die_id").write_text(f"{core // 2}\n")
        (d / "physical_package_id").write_text("0\n")
        (d / "thread_siblings_list").write_text(f"{core},{core + 4}\n")
    topo = read_sysfs(tmp_path)
    assert [c.cpus for c in topo.cores] == [(0, 4), (1, 5), (2, 6), (3, 7)]
    assert topo.cores_per_socket() == {0: 4} and topo.threads_per_core == 2


def test_discover_this_node_covers_the_cpus_we_may_run_on():
    topo = discover()
    assert set(os.sched_getaffinity(0)) <= set(topo.cpus)
    assert len(topo.cores) >= 1


def test_cluster_config_checks_name_the_option():
    cfg = load_config(None, ["--cluster.node_type=skx-8160", "--cluster.ranks_per_node=2"])
    assert (cfg.cluster.node_type, cfg.cluster.ranks_per_node, cfg.cluster.pin) == ("skx-8160", 2, True)
    for bad, message in [("--cluster.node_type=knl", "cluster.node_type = 'knl': must be one of"),
                         ("--cluster.comm_cores_per_rank=-2", "cluster.comm_cores_per_rank = -2"),
                         ("--cluster.data_cores_per_rank=-1", "cluster.data_cores_per_rank = -1"),
                         ("--cluster.nodes=-1", "cluster.nodes = -1")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [bad])



@pytest.mark.parametrize("preset,ranks", [("knl-7250", 2), ("knl-7250", 4), ("skx-8160", 3),
                                          ("skx-8160", 4)])
def test_preset_communication_budget_is_per_socket_not_per_rank(preset, ranks):
    # Codreanu IV-E: 4 communication cores per KNL node, 2 per Skylake socket, whatever the
    # number of ranks sharing them (each rank keeps at least one)
    topology = PRESETS[preset].topology
    plan = plan_node(topology, ranks=ranks, preset=preset)
    rule = PRESETS[preset].comm_per_socket
    socket_of = {c.first: c.socket for c in topology.cores}
    for s in {c.socket for c in topology.cores}:
        on_socket = [r for r in plan.ranks if any(socket_of[c] == s for c in r.compute)]
        used = sum(socket_of[c] == s for r in plan.ranks for c in r.comm)
        assert used == max(rule, len(on_socket)), (s, used)
