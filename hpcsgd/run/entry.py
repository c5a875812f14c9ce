"""What both trainers' entry points do around training (hpcsgd/train.py, hpcsgd/lm/train.py).

    mpiexec -n 4 .venv/bin/python -m hpcsgd.train CONFIG.toml [--section.key=value ...]
    mpiexec -n 4 .venv/bin/python -m hpcsgd.lm.train CONFIG.toml [--section.key=value ...]

The MPI world, a check that the launcher and MPI agree on its size, the configuration from
the command line, and the exit code (hpcsgd/exits.py): EXIT_REFUSED before any work, or
the code the run's summary asks for (EXIT_REQUEUE after a stop signal).
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from hpcsgd.config import Config, ConfigError, load_config
from hpcsgd.exits import EXIT_REFUSED, MEANING
from hpcsgd.run.world import Refused, World, expected_world_size, init_world



def launcher_rank() -> int:
    """This process's rank as the launcher tells it (0 when not launched by one)."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def usage_help(prog: str, args: list[str]) -> str:
    """--help: the usage; --help SECTION: every option of [SECTION] with its type, default and
    documentation (read from the config dataclasses)."""
    from hpcsgd.config.doc import format_section, sections
    wanted = [a for a in args if a in sections()]
    if wanted:
        return "\n\n".join(format_section(s) for s in wanted)
    cmd = {"hpcsgd": "hpcsgd train", "hpcsgd.lm": "hpcsgd lm"}.get(prog, prog)
    return (f"usage: mpiexec -n N {cmd} CONFIG.toml [--section.key=value ...]\n"
            f"       {cmd} --help [SECTION ...]\n\n"
            "Trains with the configuration tree: defaults <- CONFIG.toml <- --section.key=value "
            "overrides\n(the value is read as TOML: --optim.base_lr=0.05, "
            "--schedule.milestones=[30,60], --run.name=b8k).\n\n"
            f"Sections ({cmd} --help SECTION lists their options, types, defaults and "
            f"meaning):\n  {', '.join(sections())}\n\n"
            "Exit codes (hpcsgd/exits.py):\n" + "\n".join(f"  {code}  {meaning}"
                                                      for code, meaning in MEANING.items()))


def config_from_argv(argv: list[str], module: str, *, world_size: int, task: str) -> Config:
    """``CONFIG.toml [--section.key=value ...]`` -> the tree, validated once for this task and
    world size (hpcsgd.config.validate); ConfigError otherwise."""
    if not argv or argv[0].startswith("--"):
        raise ConfigError(f"usage: python -m {module} CONFIG.toml [--section.key=value ...]")
    return load_config(argv[0], argv[1:], world_size=world_size, task=task)


def run_entry(prog: str, start: Callable[[list[str], World], dict],
              argv: list[str] | None = None) -> int:
    """Run ``start(argv, world) -> summary`` on every rank; return the process's exit code.

    ``start`` refuses bad input by raising Refused on every rank together (hpcsgd.run.world.agree);
    rank 0 prints it once, prefixed with ``prog``.
    """
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):  # before MPI: help needs no world
        if launcher_rank() == 0:
            print(usage_help(prog, args))
        return 0
    world = init_world()
    expected = expected_world_size()
    if expected is not None and expected != world.size:
        print(f"{prog}: the launcher started {expected} processes but MPI sees a world of "
              f"{world.size}: this mpiexec belongs to another MPI than mpi4py's "
              "(use the environment's own mpiexec)", file=sys.stderr)
        return EXIT_REFUSED
    try:
        summary = start(args, world)
    except Refused as e:
        if world.is_root:
            print(f"{prog}: refused: {e}", file=sys.stderr)
        return EXIT_REFUSED
    return summary.get("exit_code", 0)


def report_file(name: str) -> str:
    """An evaluation tool's --report: a file name, written in the run folder (Refused if it
    names a path)."""
    if os.path.basename(name) != name:
        raise Refused(f"--report {name!r}: a file name, written in the run folder")
    return name


def evaluation_entry(prog: str, start: Callable[[World], object]) -> int:
    """The evaluation tools' main (hpcsgd.ensemble, hpcsgd.lm.score): start(world) on every
    rank of a new world; a Refused (raised on every rank together, hpcsgd.run.world.agree) is
    printed once by rank 0, prefixed with `prog`. The exit code: 0, or EXIT_REFUSED."""
    world = init_world()
    try:
        start(world)
    except Refused as e:
        if world.is_root:
            print(f"{prog}: refused: {e}", file=sys.stderr)
        return EXIT_REFUSED
    return 0
