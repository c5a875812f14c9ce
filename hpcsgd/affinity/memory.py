"""Memory placement: high-bandwidth memory first, as `numactl --preferred` does.

A Xeon Phi (KNL) node booted in Flat mode exposes its 16 GB of MCDRAM as NUMA nodes of
their own, with memory and no CPUs; memory is allocated in DDR unless a process asks for
MCDRAM. Intel's VLAB runs of Codreanu et al. (Table VIII, the 64K row of Table IX) used
Flat-Quadrant nodes; Stampede2's KNL nodes run in Cache mode, where MCDRAM is a cache in
front of DDR and there is nothing to choose. `cluster.memory = "hbm"` makes a rank prefer the
high-bandwidth node nearest its compute cores: allocations go there while it has room and
spill to DDR after (MPOL_PREFERRED, not a hard binding: a 512-image ResNet-50 batch does not
fit in 16 GB).

A memory policy belongs to a thread and is inherited by the threads and processes it
creates later, so a rank sets it on its main thread before the communication thread and the
decode workers start, and on each OpenMP thread while the team is bound (apply.py): pages
are placed by the policy of the thread that first touches them.
"""
from __future__ import annotations

import contextlib
import ctypes
import platform
from dataclasses import dataclass
from pathlib import Path

from hpcsgd.affinity.topology import parse_cpulist

MPOL_DEFAULT, MPOL_PREFERRED = 0, 1
_SYSCALLS = {  # (set_mempolicy, get_mempolicy)
    "x86_64": (238, 239), "aarch64": (237, 236), "arm64": (237, 236),
    "ppc64le": (261, 260), "ppc64": (261, 260), "riscv64": (237, 236),
}
_MASK_WORDS = 16  # 1024 NUMA nodes, the kernel's usual MAX_NUMNODES


@dataclass(frozen=True)
class NumaNode:
    node: int
    cpus: tuple[int, ...]
    mem_kib: int
    distance: dict[int, int]
    """Node id -> the firmware's distance (SLIT) from this node to it."""
    read_bandwidth: int | None = None
    """Read bandwidth from its nearest initiator (HMAT, MB/s), where the firmware says."""


def read_numa_nodes(root: str | Path = "/sys/devices/system/node") -> list[NumaNode]:
    """Every NUMA node with its CPUs, memory, distances and HMAT bandwidth (sysfs); [] where
    there is none. A node's distance file lists the online nodes in order, not by id."""
    dirs = sorted(Path(root).glob("node[0-9]*"), key=lambda p: int(p.name[4:]))
    ids = [int(d.name[4:]) for d in dirs]
    out = []
    for d, node in zip(dirs, ids):
        mem_kib = 0
        for line in (d / "meminfo").read_text().splitlines():
            if "MemTotal:" in line:
                mem_kib = int(line.split("MemTotal:")[1].split()[0])
        distances = [int(x) for x in (d / "distance").read_text().split()]
        bandwidth = d / "access0" / "initiators" / "read_bandwidth"
        out.append(NumaNode(node, tuple(parse_cpulist((d / "cpulist").read_text())), mem_kib,
                            dict(zip(ids, distances)),
                            int(bandwidth.read_text()) if bandwidth.exists() else None))
    return out


def nearest_hbm_node(nodes: list[NumaNode], cpus) -> int | None:
    """The high-bandwidth memory node (MCDRAM in Flat mode) nearest to `cpus` (the rank's
    compute cores), by the firmware's distance from their node; None when there is none.
    High-bandwidth: a node with memory and no CPUs, and, where the firmware gives bandwidths
    (HMAT), faster than the CPUs' own node: CXL expanders and persistent memory are CPU-less
    nodes too, but slower. Ties go to the lower node number."""
    cpus = set(cpus)
    home = next((n for n in nodes if cpus & set(n.cpus)), None)
    hbm = [n for n in nodes if not n.cpus and n.mem_kib > 0]
    if home is not None and home.read_bandwidth is not None:
        hbm = [n for n in hbm if n.read_bandwidth is not None
               and n.read_bandwidth > home.read_bandwidth]
    if not hbm:
        return None
    if home is None:
        return hbm[0].node
    return min(hbm, key=lambda n: (home.distance.get(n.node, 255), n.node)).node


def _mask(node: int):
    words = (ctypes.c_ulong * _MASK_WORDS)()
    words[node // 64] = 1 << (node % 64)
    return words


def _calls() -> tuple[int, int]:
    calls = _SYSCALLS.get(platform.machine())
    if calls is None:
        raise OSError(f"no memory-policy system calls known for {platform.machine()}")
    return calls


def _set_policy(mode: int, node: int | None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    words = _mask(node) if node is not None else None
    if libc.syscall(ctypes.c_long(_calls()[0]), ctypes.c_int(mode), words,
                    ctypes.c_ulong(64 * _MASK_WORDS + 1 if words is not None else 0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"set_mempolicy({mode}, node {node}) failed")


def prefer_node(node: int) -> None:
    """MPOL_PREFERRED on `node` for the calling thread (and what it creates afterwards)."""
    _set_policy(MPOL_PREFERRED, node)


@contextlib.contextmanager
def default_placement():
    """The calling thread allocates as the OS would (MPOL_DEFAULT) inside the block, then
    gets its policy back: for memory that must not take the preferred node's room, such as
    the staged data set in tmpfs (tmpfs pages follow the writing thread's policy)."""
    try:
        mode, nodes = thread_policy()
    except OSError:  # no memory policies here: nothing to lift
        mode, nodes = MPOL_DEFAULT, []
    if mode != MPOL_PREFERRED or not nodes:
        yield
        return
    _set_policy(MPOL_DEFAULT, None)
    try:
        yield
    finally:
        prefer_node(nodes[0])


def thread_policy() -> tuple[int, list[int]]:
    """(mode, nodes) of the calling thread's memory policy (get_mempolicy)."""
    libc = ctypes.CDLL(None, use_errno=True)
    mode = ctypes.c_int(-1)
    words = (ctypes.c_ulong * _MASK_WORDS)()
    if libc.syscall(ctypes.c_long(_calls()[1]), ctypes.byref(mode), words,
                    ctypes.c_ulong(64 * _MASK_WORDS + 1), None, ctypes.c_ulong(0)) != 0:
        raise OSError(ctypes.get_errno(), "get_mempolicy failed")
    nodes = [64 * w + b for w in range(_MASK_WORDS) for b in range(64) if words[w] >> b & 1]
    return mode.value, nodes
