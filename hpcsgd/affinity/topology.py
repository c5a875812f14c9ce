"""The CPU topology of a node: logical CPUs grouped into physical cores, sockets and NUMA nodes.

Read from sysfs (`/sys/devices/system/cpu/cpu*/topology`, `/sys/devices/system/node`), or
from `lscpu -p=CPU,CORE,SOCKET,NODE` when sysfs is not readable, or described synthetically
for the papers' nodes (presets), so that plans for a KNL or a Skylake node can be made and
tested on any machine. Parsing takes text and returns a Topology: pure and testable.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Core:
    """One physical core: its socket, NUMA node and logical CPUs (hardware threads)."""
    socket: int
    core: int
    node: int
    cpus: tuple[int, ...]

    @property
    def first(self) -> int:
        """The CPU id a one-thread-per-core plan uses (the paper's 'core id')."""
        return self.cpus[0]


@dataclass(frozen=True)
class Topology:
    name: str
    cores: tuple[Core, ...]
    """Ordered by (socket, first CPU id): the order in which cores are handed out."""

    @property
    def sockets(self) -> list[int]:
        return sorted({c.socket for c in self.cores})

    @property
    def numa_nodes(self) -> list[int]:
        return sorted({c.node for c in self.cores})

    @property
    def cpus(self) -> list[int]:
        return sorted(cpu for c in self.cores for cpu in c.cpus)

    @property
    def threads_per_core(self) -> int:
        return max((len(c.cpus) for c in self.cores), default=0)

    def cores_per_socket(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for c in self.cores:
            out[c.socket] = out.get(c.socket, 0) + 1
        return out

    def restrict(self, allowed) -> "Topology":
        """Only the CPUs in `allowed` (e.g. this process's affinity mask or cgroup); cores
        with no allowed CPU disappear."""
        allowed = set(allowed)
        cores = []
        for c in self.cores:
            cpus = tuple(cpu for cpu in c.cpus if cpu in allowed)
            if cpus:
                cores.append(Core(c.socket, c.core, c.node, cpus))
        return Topology(self.name, tuple(cores))

    def describe(self) -> str:
        per = self.cores_per_socket()
        shape = " + ".join(str(per[s]) for s in self.sockets)
        return (f"{self.name}: {len(self.sockets)} socket(s) x {shape} cores, "
                f"{self.threads_per_core} thread(s)/core, {len(self.numa_nodes)} NUMA node(s), "
                f"{len(self.cpus)} CPUs")


def _build(name: str, rows) -> Topology:
    """rows: (cpu, core, socket, node) per logical CPU -> Topology."""
    grouped: dict[tuple[int, int], list] = {}
    for cpu, core, socket, node in rows:
        grouped.setdefault((socket, core), []).append((cpu, node))
    if not grouped:
        raise ValueError(f"{name}: no CPUs found")
    cores = [Core(socket, core, min(n for _, n in items), tuple(sorted(c for c, _ in items)))
             for (socket, core), items in grouped.items()]
    cores.sort(key=lambda c: (c.socket, c.first))
    return Topology(name, tuple(cores))


def parse_lscpu(text: str, name: str = "lscpu") -> Topology:
    """`lscpu -p=CPU,CORE,SOCKET,NODE` output (comment lines start with '#'; an empty NODE
    field, as on machines without NUMA, means node 0)."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(",")
        if len(fields) < 3 or not all(f.strip().isdigit() for f in fields[:3]):
            raise ValueError(f"lscpu line {lineno}: expected CPU,CORE,SOCKET,NODE, got {line!r}")
        node = int(fields[3]) if len(fields) > 3 and fields[3].strip().isdigit() else 0
        rows.append((int(fields[0]), int(fields[1]), int(fields[2]), node))
    return _build(name, rows)


def parse_cpulist(text: str) -> list[int]:
    """Linux CPU list syntax: "0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise ValueError(f"bad CPU list {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        out.extend(range(lo, hi + 1))
    return out


def format_cpulist(cpus) -> str:
    """[0, 1, 2, 3, 8] -> "0-3,8" (the inverse of parse_cpulist); "-" when empty."""
    cpus = sorted(set(cpus))
    if not cpus:
        return "-"
    parts, start, prev = [], cpus[0], cpus[0]
    for c in cpus[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(parts)


def read_sysfs(root: str | Path = "/sys/devices/system", name: str = "this node") -> Topology:
    """The online CPUs' topology from sysfs."""
    root = Path(root)
    online = parse_cpulist((root / "cpu" / "online").read_text())
    node_of: dict[int, int] = {}
    for node_dir in sorted((root / "node").glob("node[0-9]*")):
        for cpu in parse_cpulist((node_dir / "cpulist").read_text()):
            node_of[cpu] = int(node_dir.name[4:])
    rows = []
    for cpu in online:
        topo = root / "cpu" / f"cpu{cpu}" / "topology"
        rows.append((cpu, _core_key(topo), int((topo / "physical_package_id").read_text()),
                     node_of.get(cpu, 0)))
    return _build(name, rows)


def _core_key(topo: Path) -> int:
    """One number per physical core: the lowest CPU among its hardware threads. core_id is
    not enough: on CPUs of several dies per package (Cascade Lake-AP, Sapphire Rapids XCC,
    AMD's chiplets) it repeats on every die, and grouping by (package, core_id) would merge
    the cores of different dies into one with 2 x the threads."""
    for siblings in ("core_cpus_list", "thread_siblings_list"):  # newer name, then older
        if (topo / siblings).exists():
            return min(parse_cpulist((topo / siblings).read_text()))
    return int((topo / "core_id").read_text())


def discover(name: str = "this node") -> Topology:
    """This node's topology: sysfs, else lscpu, else every CPU its own core on one socket."""
    try:
        return read_sysfs(name=name)
    except (OSError, ValueError):
        pass
    try:
        text = subprocess.run(["lscpu", "-p=CPU,CORE,SOCKET,NODE"], capture_output=True,
                              text=True, check=True, timeout=10).stdout
        return parse_lscpu(text, name)
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return _build(name, [(cpu, cpu, 0, 0) for cpu in range(os.cpu_count() or 1)])


def synthetic(name: str, *, sockets: int, cores_per_socket: int, threads_per_core: int,
              numa_per_socket: int = 1) -> Topology:
    """A node numbered as Linux numbers Intel CPUs: CPU id = thread x (all cores) + core, so
    CPUs 0..N-1 are the first hardware thread of each core (KNL 7250: 0-67; their siblings
    68-135, 136-203, 204-271)."""
    total = sockets * cores_per_socket
    per_numa = cores_per_socket // numa_per_socket
    rows = []
    for t in range(threads_per_core):
        for s in range(sockets):
            for c in range(cores_per_socket):
                core = s * cores_per_socket + c
                rows.append((t * total + core, c, s, s * numa_per_socket + c // per_numa))
    return _build(name, rows)
