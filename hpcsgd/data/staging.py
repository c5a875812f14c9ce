"""Stage LMDBs in node-local RAM once per node (Codreanu V-A1: "copy the dataset to RAM at the
beginning of the job").

Node-local rank 0 checks that the copy fits (free space of the target file system and the
node's available memory, keeping a reserve), copies `data.mdb` and the converter's side files
into `<stage_dir>/<name>` through a temporary folder renamed when complete, and tells the
other ranks of the node; they wait (sync point on the node communicator) and then read the
copy. Every process maps the same tmpfs pages, so the data set sits in RAM once per node
however many ranks and decode workers read it. A copy of the same source (same size and
modification time) left by an earlier run with `stage_keep` is reused.

``{node}`` in the stage folder is replaced by a number unique to the node (the world rank of
its node-local rank 0), for nodes that see the same folder: nodes simulated on one machine
(MPICH's MPIR_CVAR_NUM_CLIQUES, tests/mpi/test_multinode.py), or a stage folder on storage
the nodes share. Without it such nodes would copy into, and replace, the same folder.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

from hpcsgd.store.lmdb_store import DataPathError, check_lmdb_path

RESERVE_FRACTION = 0.10  # of the node's memory, left free for the ranks' own work


class StagingError(DataPathError):
    """The staged copy cannot be made; the message names the path, the sizes and the node."""


def mem_available() -> int:
    """MemAvailable of /proc/meminfo in bytes (page cache that can be dropped counts)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemTotal in /proc/meminfo")


def check_fits(nbytes: int, stage_root: Path, *, available: int, total: int,
               free_space: int) -> str | None:
    """Why a copy of `nbytes` cannot be staged under `stage_root`, or None if it fits."""
    gib = 1 << 30
    reserve = int(RESERVE_FRACTION * total)
    if nbytes > free_space:
        return (f"{nbytes / gib:.2f} GiB do not fit in {stage_root} "
                f"({free_space / gib:.2f} GiB free)")
    if nbytes + reserve > available:
        return (f"{nbytes / gib:.2f} GiB plus a reserve of {reserve / gib:.2f} GiB exceed the "
                f"{available / gib:.2f} GiB of memory available")
    return None


def _stamp(source: Path) -> dict:
    st = (source / "data.mdb").stat()
    return {"source": str(source.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def staged_name(source: Path) -> str:
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]
    return f"{source.name}-{digest}"


def stage_copy(source: Path, stage_root: Path) -> tuple[Path, bool]:
    """Copy one LMDB folder (node-local rank 0 only). Returns (staged path, copied now)."""
    source = check_lmdb_path(source)
    target = stage_root / staged_name(source)
    stamp = _stamp(source)
    stamp_file = target / "staged-from.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return target, False
    stage_root.mkdir(parents=True, exist_ok=True)
    need = sum(f.stat().st_size for f in source.iterdir() if f.is_file() and f.name != "lock.mdb")
    free = shutil.disk_usage(stage_root).free
    if target.exists():  # a stale copy of another version: its space is ours to reuse
        free += sum(f.stat().st_size for f in target.iterdir() if f.is_file())
    why = check_fits(need, stage_root, available=mem_available(), total=mem_total(),
                     free_space=free)
    if why:
        raise StagingError(f"data.stage_dir: cannot stage {source} on {socket.gethostname()}: "
                           f"{why}; free memory or set data.stage_dir = \"\" to read in place")
    shutil.rmtree(target, ignore_errors=True)
    tmp = stage_root / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for f in source.iterdir():
            if f.is_file() and f.name != "lock.mdb":  # lock.mdb is per-host state, not data
                shutil.copyfile(f, tmp / f.name)
        (tmp / "staged-from.json").write_text(json.dumps(stamp))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, True


def stage_lmdbs(sources: list[Path], stage_root: str | Path, node_comm, *,
                keep: bool, watch=None) -> list[Path]:
    """Stage every source once per node; every rank of the node gets the staged paths.

    All ranks of the node call this; only node-local rank 0 copies, and its failure is raised
    on every rank of the node (no rank waits for a copy that will not come). With a watch
    (hpcsgd/run/watch.py; every rank of the job calls this together) the node's ranks wait
    for the copy no longer than its limit: a first rank stuck in the copy is named."""
    stage_root = Path(node_folder(str(stage_root), node_comm))
    result = None
    if node_comm.rank == 0:
        try:
            staged = [stage_copy(Path(s), stage_root) for s in sources]
            if not keep:
                made = [path for path, copied in staged if copied]
                atexit.register(_remove, made)
            result = ("ok", [str(path) for path, _ in staged])
        except (OSError, DataPathError) as e:
            result = ("error", f"{type(e).__name__}: {e}")
    if watch is not None:
        watch.wait(node_comm.Ibarrier(), f"staging {', '.join(Path(s).name for s in sources)} "
                                         f"into {stage_root} (node-local rank 0 copies)")
    status, value = node_comm.bcast(result, root=0)  # sync point: the node's copy is complete
    if status == "error":
        raise StagingError(value)
    return [Path(v) for v in value]


def node_folder(stage_root: str, node_comm) -> str:
    """stage_root with ``{node}`` replaced by the world rank of the node's local rank 0."""
    if "{node}" not in stage_root:
        return stage_root
    from hpcsgd.mpi_start import MPI
    node, world = node_comm.Get_group(), MPI.COMM_WORLD.Get_group()
    try:
        leader = MPI.Group.Translate_ranks(node, [0], world)[0]
    finally:
        node.Free()
        world.Free()
    return stage_root.replace("{node}", str(leader))


def _remove(paths) -> None:
    """At exit of node-local rank 0: drop copies this run made. Pages still mapped by other
    processes stay valid until they unmap them (unlink semantics)."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
