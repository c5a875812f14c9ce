"""The core plan of a node: which cores each rank computes, communicates and decodes on.

Codreanu et al. (IV-E) choose "the number (and IDs) of cores that are performing
communication and computation" explicitly:
- KNL 7250 (68 cores, one Intel Caffe rank): the first 64 cores run the OpenMP team, ML-SL's
  communication uses the last 4;
- dual-socket Skylake 8160 (2 x 24 cores): per socket 22 OpenMP threads and 2 communication
  servers (44 compute threads per node).
`plan_node` generalises that rule, as a pure function of the topology and four numbers:
the node's cores (ordered by socket) are cut into one contiguous block per rank (a socket is
never shared when the ranks divide the sockets); inside a block, the communication cores are
the last cores of each socket the block spans, taken in turn from each socket (2 + 2 on a
Skylake node), the data-decoding cores the ones just before them, and the compute cores the
rest. One OpenMP thread per compute core, on the core's first hardware thread (the paper's 64
threads on 64 cores; hyperthread siblings stay idle). With more ranks than cores nothing is
reserved and each rank runs one thread: on one core each, round-robin, when the ranks divide
evenly over the cores, else on all of them (the OS balances; measured, docs/affinity.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from hpcsgd.affinity.topology import Core, Topology, format_cpulist, synthetic


@dataclass(frozen=True)
class Preset:
    name: str
    topology: Topology | None
    """The node the preset was written for (None: any node, "auto")."""
    ranks_per_node: int
    """Default ranks per node (0: one per node)."""
    comm_per_socket: int | None
    """Communication cores per socket a rank spans (None: the auto rule, auto_comm_cores)."""
    source: str


PRESETS = {
    "knl-7250": Preset(
        "knl-7250", synthetic("knl-7250", sockets=1, cores_per_socket=68, threads_per_core=4),
        ranks_per_node=1, comm_per_socket=4,
        source="Codreanu IV-E, Stampede2 KNL: 64 OpenMP compute cores + the last 4 for ML-SL"),
    "skx-8160": Preset(
        "skx-8160", synthetic("skx-8160", sockets=2, cores_per_socket=24, threads_per_core=2),
        ranks_per_node=1, comm_per_socket=2,
        source="Codreanu IV-E, MareNostrum 4 Skylake: per socket 22 OpenMP threads + 2 "
               "communication servers"),
    "auto": Preset("auto", None, ranks_per_node=0, comm_per_socket=None,
                   source="this node's topology; communication cores only from 8 cores per rank"),
}


def auto_comm_cores(cores: int) -> int:
    """Communication cores for a rank of `cores` cores when no preset says: none below 8
    (a 2-core rank cannot spare one), else about 1/16 of them, the paper's KNL ratio (4 of
    68); 24 cores -> 2, as on one Skylake 8160 socket."""
    return 0 if cores < 8 else max(1, int(cores / 16 + 0.5))


@dataclass(frozen=True)
class RankPlan:
    local_rank: int
    compute: tuple[int, ...]
    """CPU ids of the OpenMP compute threads, one per core, in thread order."""
    comm: tuple[int, ...]
    """CPU ids of the communication thread (and the stall watchdog)."""
    data: tuple[int, ...]
    """CPU ids of the decode workers (empty: they share the compute cores)."""
    threads: int
    """OpenMP threads (normally len(compute))."""
    mask: tuple[int, ...]
    """Every hardware thread of this rank's cores: what a launcher binds the rank to."""
    shared: bool = False
    """More ranks than cores: the compute core is shared with other ranks."""

    def roles(self) -> dict[str, tuple[int, ...]]:
        return {"compute": self.compute, "comm": self.comm, "data": self.data}


@dataclass(frozen=True)
class NodePlan:
    topology: Topology
    preset: str
    ranks: tuple[RankPlan, ...]

    @property
    def unused(self) -> list[int]:
        used = {cpu for r in self.ranks for cpu in r.mask}
        return [c.first for c in self.topology.cores if c.first not in used]


def _blocks(topology: Topology, ranks: int) -> list[list[Core]]:
    """Contiguous blocks of cores, one per rank; socket-aligned when ranks divide sockets or
    sockets divide ranks; round-robin single cores when ranks outnumber cores."""
    cores = list(topology.cores)
    if ranks > len(cores):
        if ranks % len(cores) == 0:  # evenly oversubscribed: the same number on every core
            return [[cores[r % len(cores)]] for r in range(ranks)]
        # unevenly: round-robin would put one more rank on some cores, and synchronous SGD
        # runs at the pace of the most crowded core (3 ranks on 2 cores measured 11% slower
        # than letting the OS share all cores among them: docs/affinity.md)
        return [list(cores) for _ in range(ranks)]
    sockets = topology.sockets
    if ranks % len(sockets) == 0:  # each socket cut into ranks/sockets blocks
        per = ranks // len(sockets)
        blocks = []
        for s in sockets:
            blocks += _even_split([c for c in cores if c.socket == s], per)
        return blocks
    return _even_split(cores, ranks)  # e.g. 1 rank over 2 sockets


def _even_split(items: list, parts: int) -> list[list]:
    q, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        size = q + (1 if i < extra else 0)
        out.append(items[start:start + size])
        start += size
    return out


def _take_from_ends(segments: list[list[Core]], count: int) -> list[Core]:
    """The last free cores of each segment, one segment at a time in turn (2 + 2 for 4
    communication cores over two sockets); removes them from the segments."""
    taken: list[Core] = []
    while len(taken) < count:
        progress = False
        for seg in segments:
            if seg and len(taken) < count:
                taken.append(seg.pop())
                progress = True
        if not progress:
            break
    return taken


def plan_node(topology: Topology, *, ranks: int, comm_cores: int = -1, data_cores: int = 0,
              threads: int = 0, preset: str = "auto") -> NodePlan:
    """Every rank's compute, communication and data cores on one node.

    comm_cores: per rank, -1 = the preset's rule (PRESETS[preset].comm_per_socket per socket,
    split among the ranks on that socket, at least 1 each; "auto": auto_comm_cores); data_cores: per rank; threads: OpenMP threads
    per rank, 0 = one per compute core (one when ranks outnumber cores). Raises ValueError naming the option that cannot fit.
    """
    if ranks < 1:
        raise ValueError(f"cluster.ranks_per_node = {ranks}: must be >= 1")
    if preset not in PRESETS:
        raise ValueError(f"cluster.node_type = {preset!r}: unknown (known: {', '.join(PRESETS)})")
    if data_cores < 0 or comm_cores < -1:
        raise ValueError(f"cluster.comm_cores_per_rank = {comm_cores}, cluster.data_cores_per_rank"
                         f" = {data_cores}: must be >= -1 and >= 0")
    rule = PRESETS[preset].comm_per_socket
    shared = ranks > len(topology.cores)
    plans = []
    blocks = _blocks(topology, ranks)
    # the preset's communication cores are a budget per socket (Codreanu IV-E: 4 per KNL, 2
    # per Skylake socket), shared by the ranks on that socket: at least one each
    sharers = {s: sum(any(c.socket == s for c in b) for b in blocks)
               for s in {c.socket for c in topology.cores}}
    for r, block in enumerate(blocks):
        segments = [[c for c in block if c.socket == s] for s in sorted({c.socket for c in block})]
        if shared and (comm_cores > 0 or data_cores > 0):
            raise ValueError(
                f"cluster.comm_cores_per_rank = {comm_cores}, cluster.data_cores_per_rank = "
                f"{data_cores}: cannot reserve cores when {ranks} ranks share "
                f"{len(topology.cores)} core(s)")
        if comm_cores >= 0:
            n_comm = comm_cores
        elif shared:
            n_comm = 0
        else:
            n_comm = sum(max(1, rule // sharers[seg[0].socket]) for seg in segments) \
                if rule is not None else auto_comm_cores(len(block))
        if n_comm + data_cores >= len(block):
            raise ValueError(
                f"cluster.comm_cores_per_rank = {n_comm} + cluster.data_cores_per_rank = "
                f"{data_cores} leave no compute core in local rank {r}'s {len(block)} core(s) "
                f"({topology.describe()}, {ranks} rank(s) per node)")
        comm = _take_from_ends(segments, n_comm)
        data = _take_from_ends(segments, data_cores)
        compute = [c for seg in segments for c in seg]
        plans.append(RankPlan(
            local_rank=r, compute=tuple(c.first for c in compute),
            comm=tuple(sorted(c.first for c in comm)), data=tuple(sorted(c.first for c in data)),
            threads=threads or (1 if shared else len(compute)),
            mask=tuple(sorted(cpu for c in block for cpu in c.cpus)), shared=shared))
    return NodePlan(topology, preset, tuple(plans))


def overlaps(plan: NodePlan) -> list[str]:
    """Every CPU that two roles (or, without oversubscription, two ranks) share: [] is a
    valid plan."""
    owner: dict[int, str] = {}
    problems = []
    for r in plan.ranks:
        for role, cpus in r.roles().items():
            for cpu in cpus:
                who = f"rank {r.local_rank} {role}"
                if cpu in owner and not (r.shared and role == "compute"
                                         and owner[cpu].endswith("compute")):
                    problems.append(f"CPU {cpu}: {owner[cpu]} and {who}")
                owner.setdefault(cpu, who)
    return problems


def openmp_env(rank: RankPlan, runtime: str = "gnu") -> dict[str, str]:
    """The OpenMP variables that place this rank's team as the plan does, when set before the
    process starts: GNU libgomp (PyTorch's wheels) reads OMP_PLACES/OMP_PROC_BIND; Intel's
    libiomp5 (Intel Caffe, the paper's stack) reads KMP_AFFINITY and KMP_BLOCKTIME."""
    env = {"OMP_NUM_THREADS": str(rank.threads)}
    if runtime == "gnu":
        env["OMP_PLACES"] = ",".join(f"{{{c}}}" for c in rank.compute)
        env["OMP_PROC_BIND"] = "close"
    elif runtime == "intel":
        env["KMP_AFFINITY"] = (f"granularity=fine,proclist=[{','.join(map(str, rank.compute))}]"
                               ",explicit")
        # a thread that finished its work sleeps after 1 ms instead of 200 ms of spinning
        # (the value PyTorch's CPU launcher sets with Intel OpenMP)
        env["KMP_BLOCKTIME"] = "1"
    else:
        raise ValueError(f"OpenMP runtime {runtime!r}: must be 'gnu' or 'intel'")
    return env


def plan_rows(plan: NodePlan) -> list[list[str]]:
    """Table rows: local rank, threads, compute, communication, data CPUs."""
    return [[str(r.local_rank), str(r.threads), format_cpulist(r.compute),
             format_cpulist(r.comm), format_cpulist(r.data) if r.data else "(compute)"]
            for r in plan.ranks]


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
