"""Launcher binding for a node plan: each rank bound to its block of cores before it starts.

hpcsgd places its own threads inside the rank (hpcsgd/affinity/apply.py), so a launcher only
has to give every rank its block (compute + communication + data cores, all their hardware
threads). Pure functions of the plan: the flags and variables of Slurm's srun, MPICH's Hydra
mpiexec, Open MPI's mpirun and Intel MPI, and of Intel Caffe + ML-SL (the paper's stack).
"""
from __future__ import annotations

import re

from hpcsgd.affinity.planner import NodePlan, RankPlan, openmp_env


def cpu_mask(cpus) -> str:
    """CPU ids -> hexadecimal bit mask without 0x (Intel MPI); srun takes it with 0x."""
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    return f"{value:x}"


def _contiguous_equal_blocks(plan: NodePlan) -> int | None:
    """Cores per rank when every rank owns an equal block of whole cores with no sharing (the
    case Open MPI's ppr:N:node:PE=k mapping can express), else None."""
    sizes = {len(r.compute) + len(r.comm) + len(r.data) for r in plan.ranks}
    if len(sizes) == 1 and not plan.ranks[0].shared:
        return sizes.pop()
    return None


def launcher_flags(plan: NodePlan, *, nodes: int, program: str) -> dict[str, str]:
    """The launch command for `nodes` nodes of this plan, per launcher."""
    n = len(plan.ranks)
    total = nodes * n
    masks = ",".join("0x" + cpu_mask(r.mask) for r in plan.ranks)
    hydra = ",".join("+".join(map(str, r.mask)) for r in plan.ranks)
    cpus_per_task = max(len(r.mask) for r in plan.ranks)
    out = {
        "srun": f"srun --nodes={nodes} --ntasks-per-node={n} --cpus-per-task={cpus_per_task} "
                f"--cpu-bind=verbose,mask_cpu:{masks} {program}",
        "mpich": f"mpiexec -n {total} -ppn {n} -bind-to user:{hydra} {program}",
        "intelmpi": f"mpirun -n {total} -ppn {n} -genv I_MPI_PIN=1 "
                    f"-genv I_MPI_PIN_DOMAIN=[{','.join(cpu_mask(r.mask) for r in plan.ranks)}] "
                    f"{program}",
    }
    per = _contiguous_equal_blocks(plan)
    if per is not None:
        out["openmpi"] = (f"mpirun -n {total} --map-by ppr:{n}:node:PE={per} --bind-to core "
                          f"{program}")
    return out


def launcher_env(plan: NodePlan) -> dict[str, dict[str, str]]:
    """The same binding as environment variables a batch script can export, per launcher,
    plus the per-node OpenMP variables when every rank has the same thread count."""
    n = len(plan.ranks)
    out = {
        "srun": {"SLURM_CPU_BIND": "mask_cpu:" + ",".join("0x" + cpu_mask(r.mask)
                                                          for r in plan.ranks)},
        "mpich": {"HYDRA_BINDING": "user:" + ",".join("+".join(map(str, r.mask))
                                                      for r in plan.ranks)},
        "intelmpi": {"I_MPI_PIN": "1",
                     "I_MPI_PIN_DOMAIN": "[" + ",".join(cpu_mask(r.mask) for r in plan.ranks)
                                         + "]"},
    }
    per = _contiguous_equal_blocks(plan)
    if per is not None:
        out["openmpi"] = {"OMPI_MCA_rmaps_base_mapping_policy": f"ppr:{n}:node:PE={per}",
                          "OMPI_MCA_hwloc_base_binding_policy": "core"}
    servers = {len(r.comm) for r in plan.ranks}
    if len(servers) == 1 and servers != {0}:
        # Intel Caffe's ML-SL endpoint servers per process, and the node's server cores
        out["mlsl"] = {"MLSL_NUM_SERVERS": str(servers.pop()),
                       "MLSL_SERVER_AFFINITY": ",".join(str(c) for r in plan.ranks
                                                        for c in r.comm)}
    threads = {r.threads for r in plan.ranks}
    compute_first = all(max(r.compute) < min(r.comm + r.data, default=1 << 30)
                        for r in plan.ranks)
    if n == 1:
        out["openmp"] = rank_env(plan.ranks[0])  # exact: one rank, one team
    elif len(threads) == 1 and compute_first:
        # inside each rank's block: compact placement on the first cores, the last ones
        # stay free for the communication and data cores the plan put at the block's end
        out["openmp"] = {"OMP_NUM_THREADS": str(threads.pop()),
                         "KMP_AFFINITY": "granularity=fine,compact,1,0", "KMP_BLOCKTIME": "1"}
    return out


def rank_env(rank: RankPlan) -> dict[str, str]:
    """The exact per-rank OpenMP placement (both runtimes), for a wrapper that sets it before
    the rank's process starts."""
    return {**openmp_env(rank, "gnu"), **openmp_env(rank, "intel")}


_LAUNCH = re.compile(r"^#.*?\b(?:mpiexec|mpirun)\b.*?\s-(?:n|np)\s+(\d+)\b"
                     r"|^#.*?\bsrun\b.*?\s(?:-n\s*|--ntasks=)(\d+)\b", re.MULTILINE)


def ranks_in_launch_line(text: str) -> tuple[int, str] | None:
    """(total ranks, the comment line) of the first launch command in a job file's comments
    (`#   mpiexec -n 4 ...`: every job starts with the command that launches it), or None."""
    m = _LAUNCH.search(text)
    if m is None:
        return None
    return int(m.group(1) or m.group(2)), m.group(0).lstrip("# ").strip()


def shell_lines(words: list[str], *, width: int = 96) -> list[str]:
    """A shell command as lines of at most about `width` characters that paste as one command:
    words joined by " \\" continuations; a word longer than `width` (a 272-CPU binding list)
    goes inside double quotes and is cut after a separator (+ , } ]) by backslash-newline,
    which the shell removes inside double quotes, so the value stays exact."""
    lines, line = [], ""
    for word in words:
        if len(word) > width:
            key, sep, value = word.partition("=") if "=" in word[:40] else ("", "", word)
            text = f'{key}{sep}"{value}"'
            chunks = _cut(text, width)
            if line:
                lines.append(line + " \\")
            lines += [c + "\\" for c in chunks[:-1]]
            line = chunks[-1]
        elif line and len(line) + 1 + len(word) > width:
            lines.append(line + " \\")
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + ([line] if line else [])


def _cut(text: str, width: int) -> list[str]:
    """text in pieces of at most `width` characters, each ending after a list separator when
    one is in reach (no CPU id cut in two)."""
    pieces = []
    while len(text) > width:
        at = max(text.rfind(sep, 0, width) for sep in "+,}]") + 1
        at = at if at > width // 2 else width
        pieces.append(text[:at])
        text = text[at:]
    return pieces + [text]
