"""Applying the core plan inside each rank, at the start of training.

    placement = apply_plan(cfg, world)      # collective: every rank, same point
    loader.set_worker_affinity(...)         # via placement.pin_workers(loader)
    build_reducer(model, placement.comm(cfg.comm), world)

The ranks of a node share their CPU masks (allgather); ranks with the same mask (no launcher
binding, or a whole-node cgroup) split that set with the planner (hpcsgd/affinity/planner.py);
a rank the launcher already bound to its own cores plans inside them. Then:
- the main thread and torch's OpenMP team: thread i on compute CPU i (hpcsgd/affinity/openmp.py);
- the communication thread and the stall watchdog: the plan's communication cores, passed
  through `comm.comm_cores` (shared with the compute cores when the plan has none);
- the decode workers: the plan's data cores (or the compute cores).
What the user set is kept, with a warning naming it, as PyTorch's CPU launcher does:
`compute.threads` and OMP_NUM_THREADS (thread count), OMP_PLACES / OMP_PROC_BIND /
GOMP_CPU_AFFINITY / KMP_AFFINITY (the runtime placed the team itself, we leave it),
`comm.comm_cores`. Rank 0 prints the job's plan as a table.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import torch

from hpcsgd.affinity.memory import nearest_hbm_node, prefer_node, read_numa_nodes
from hpcsgd.affinity.openmp import bind_team, loaded_runtime
from hpcsgd.affinity.planner import PRESETS, RankPlan, format_table, openmp_env, plan_node
from hpcsgd.affinity.topology import Topology, discover, format_cpulist

# variables with which an OpenMP runtime places its own threads, per runtime
OPENMP_BINDING = {"gnu": ("OMP_PLACES", "OMP_PROC_BIND", "GOMP_CPU_AFFINITY"),
                  "intel": ("KMP_AFFINITY", "OMP_PLACES", "OMP_PROC_BIND"),
                  "llvm": ("KMP_AFFINITY", "OMP_PLACES", "OMP_PROC_BIND")}
_initial_mask: frozenset[int] | None = None


def initial_mask() -> frozenset[int]:
    """The CPUs this process was started on (before any plan narrowed the main thread)."""
    global _initial_mask
    if _initial_mask is None:
        _initial_mask = frozenset(os.sched_getaffinity(0))
    return _initial_mask


def mask_group(masks: list, local_rank: int) -> tuple[int, int]:
    """(index in its group, group size): the node's ranks started on the same CPU set split
    it between them; a rank bound alone to its cores plans them alone."""
    group = [r for r, m in enumerate(masks) if m == masks[local_rank]]
    return group.index(local_rank), len(group)


def resolve_preset(node_type: str, topology: Topology) -> tuple[str, str | None]:
    """(preset to plan with, warning): a preset is used on the node it describes (same
    sockets x cores); elsewhere the auto rules plan and a warning says so."""
    preset = PRESETS[node_type]
    if preset.topology is None:
        return node_type, None
    if preset.topology.cores_per_socket() == topology.cores_per_socket():
        return node_type, None
    return "auto", (f"cluster.node_type = {node_type!r} describes {preset.topology.describe()}; "
                    f"this node is {topology.describe()}: planned with the auto rules")


def user_settings(plan_env: dict[str, str], runtime: str, env=os.environ,
                  ignore: tuple[str, ...] = ()) -> tuple[dict[str, str], list[str]]:
    """The OpenMP variables the user set that the plan would have chosen differently, with a
    warning each: they are kept. Nothing is written: the runtime read its variables when it
    loaded, and a child process must not inherit one rank's placement."""
    kept, notes = {}, []
    names = dict.fromkeys([*plan_env, *OPENMP_BINDING.get(runtime, ())])
    for name in names:
        value = env.get(name)
        if value is None or value == plan_env.get(name) or name in ignore:
            continue
        kept[name] = value
        if name == "OMP_NUM_THREADS":
            notes.append(f"OMP_NUM_THREADS={value} is set in the environment: kept "
                         f"(plan: {plan_env[name]})")
        else:
            notes.append(f"{name}={value} is set in the environment: the OpenMP runtime "
                         "placed its threads itself, they are not re-bound")
    return kept, notes


@dataclass
class Placement:
    pinned: bool
    rank: RankPlan | None
    threads: int
    comm_cores: list[int]
    """What the communication thread gets (comm.comm_cores)."""
    worker_cpus: list[int]
    notes: list[str] = field(default_factory=list)
    team: dict[int, int] = field(default_factory=dict)
    """OpenMP thread (native id) -> its CPU (-1: the main thread, on the compute set)."""
    table: str = ""
    """The job's plan (rank 0 only; "" elsewhere)."""

    def comm(self, comm_cfg):
        """The [comm] section with this rank's communication cores (the user's, if set)."""
        if not self.pinned or comm_cfg.comm_cores:
            return comm_cfg
        return dataclasses.replace(comm_cfg, comm_cores=list(self.comm_cores))

    def pin_workers(self, loader) -> None:
        """Decode worker processes of `loader` onto the data cores, or the compute cores
        when the plan has none (what they inherit from the main thread anyway)."""
        if self.pinned and self.worker_cpus and loader.workers:
            loader.set_worker_affinity([self.worker_cpus])


def _plan_rank(cfg, topology: Topology, masks: list, local_rank: int):
    index, size = mask_group(masks, local_rank)
    preset, warning = resolve_preset(cfg.cluster.node_type, topology)
    mine = topology.restrict(masks[local_rank])
    plan = plan_node(mine, ranks=size, comm_cores=cfg.cluster.comm_cores_per_rank,
                     data_cores=cfg.cluster.data_cores_per_rank, threads=cfg.compute.threads,
                     preset=preset)
    return plan.ranks[index], preset, [warning] if warning else []


def _apply(cfg, rank: RankPlan, notes: list[str]) -> Placement:
    found = loaded_runtime()
    runtime = found[1] if found else "gnu"
    team: dict[int, int] = {}
    # compute.threads (the config) outranks OMP_NUM_THREADS; the plan already used it
    kept, env_notes = user_settings(openmp_env(rank, "intel" if runtime == "intel" else "gnu"),
                                    runtime, ignore=("OMP_NUM_THREADS",) if cfg.compute.threads
                                    else ())
    notes += env_notes
    threads = rank.threads
    if "OMP_NUM_THREADS" in kept and kept["OMP_NUM_THREADS"].isdigit():
        threads = int(kept["OMP_NUM_THREADS"])
    # before any thread or worker starts: they inherit the main thread's memory policy
    hbm = _prefer_hbm(rank, notes) if cfg.cluster.memory == "hbm" else None
    torch.set_num_threads(threads)
    if any(name in kept for name in OPENMP_BINDING.get(runtime, ())):
        pass  # the runtime placed the team (the user's variables); we leave it there
    else:
        # threads the main thread starts from now on inherit the compute set
        os.sched_setaffinity(0, set(rank.compute))
        try:
            team = bind_team(list(rank.compute), threads,
                             on_thread=None if hbm is None else lambda: prefer_node(hbm))
        except RuntimeError as e:
            notes.append(f"OpenMP threads confined to the compute CPUs, not one per core ({e})")
    comm_cores = list(rank.comm or rank.compute)
    if cfg.comm.comm_cores:
        comm_cores = list(cfg.comm.comm_cores)
        if rank.comm and comm_cores != list(rank.comm):
            notes.append(f"comm.comm_cores = {comm_cores} is set: kept (plan: "
                         f"{list(rank.comm)})")
    return Placement(True, rank, threads, comm_cores, list(rank.data or rank.compute), notes,
                     team)


def _prefer_hbm(rank: RankPlan, notes: list[str]) -> int | None:
    """cluster.memory = "hbm": prefer the high-bandwidth node nearest the compute cores on
    this thread (the main thread; the team's threads are set while they are bound)."""
    try:
        node = nearest_hbm_node(read_numa_nodes(), rank.compute)
    except OSError:
        node = None
    if node is None:
        notes.append('cluster.memory = "hbm": no high-bandwidth memory node here (MCDRAM in '
                     "Cache mode, or none): memory placed by the OS")
        return None
    try:
        prefer_node(node)
    except OSError as e:  # e.g. the job's cpuset leaves the node out of its memories
        notes.append(f'cluster.memory = "hbm": NUMA node {node} refused ({e.strerror}): '
                     "memory placed by the OS")
        return None
    notes.append(f"memory: NUMA node {node} (high-bandwidth) preferred, the rest after it")
    return node


def apply_plan(cfg, world) -> Placement:
    """Plan this rank's cores and apply them (cfg.cluster.pin), collectively; rank 0's
    Placement carries the job's table. A plan that cannot fit is refused on every rank."""
    from hpcsgd.run.world import agree
    mask = initial_mask()
    world.watch.gate("sharing the ranks' CPU masks for the core plan")
    masks = world.node_comm.allgather(sorted(mask))
    topology = discover()
    notes: list[str] = []
    c = cfg.cluster
    if c.ranks_per_node and c.ranks_per_node != world.local_size:
        notes.append(f"cluster.ranks_per_node = {c.ranks_per_node} but {world.local_size} "
                     f"rank(s) run on {world.hostname}")
    if c.pin:
        rank, preset, warn = agree(world, lambda: _plan_rank(cfg, topology, masks,
                                                             world.local_rank), ValueError)
        placement = _apply(cfg, rank, notes + warn)
        row = [format_cpulist(rank.compute), format_cpulist(rank.comm) if rank.comm else
               "(compute)", format_cpulist(rank.data) if rank.data else "(compute)"]
        title = f"core plan ({preset}"
    else:
        placement = Placement(False, None, torch.get_num_threads(), list(cfg.comm.comm_cores),
                              [], notes)
        row = [format_cpulist(mask) + " (not pinned)", format_cpulist(cfg.comm.comm_cores),
               "(inherited)"]
        title = "core plan (cluster.pin = false"
    # one gather (rank 0 prints): table rows and notes
    world.watch.gate("gathering the core plan")
    gathered = world.comm.gather(([world.hostname, str(world.rank), str(world.local_rank),
                                   str(placement.threads), *row], placement.notes))
    if world.is_root:
        rows = [r for r, _ in gathered]
        header = ["host", "rank", "local", "threads", "compute", "comm", "data"]
        lines = [f"{title}, {topology.describe()}):", format_table(header, rows)]
        nodes = len({r[0] for r in rows})
        lines.append(f"  OpenMP threads wait: {_wait_policy()}")
        if c.nodes and c.nodes != nodes:
            lines.append(f"  note: cluster.nodes = {c.nodes} but the job runs on {nodes} node(s)")
        by_note: dict[str, list[int]] = {}
        for r, (_, ns) in enumerate(gathered):
            for n in ns:
                by_note.setdefault(n, []).append(r)
        lines += [f"  note ({_ranks(rs, world.size)}): {n}" for n, rs in by_note.items()]
        placement.table = "\n".join(lines)
    return placement


WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "KMP_LIBRARY")


def _wait_policy() -> str:
    """How idle OpenMP threads wait: spinning (the runtimes' default) is fastest on cores of
    one's own, sleeping (OMP_WAIT_POLICY=PASSIVE) when other jobs share them (docs/affinity.md)."""
    chosen = [f"{k}={os.environ[k]}" for k in WAIT_SETTINGS if k in os.environ]
    if chosen:
        return " ".join(chosen)
    return ("the runtime's default spin-then-sleep: right on cores of this job's own (no "
            "action); only where other jobs share the cores, set OMP_WAIT_POLICY=PASSIVE")


def _ranks(ranks: list[int], size: int) -> str:
    if len(ranks) == size:
        return "all ranks"
    return ("rank " if len(ranks) == 1 else "ranks ") + format_cpulist(ranks)
