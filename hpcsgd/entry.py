"""What both trainers' entry points do around training (hpcsgd/train.py, hpcsgd/lm/train.py).

    mpiexec -n 4 .venv/bin/python -m hpcsgd.train CONFIG.toml [--section.key=value ...]
    mpiexec -n 4 .venv/bin/python -m hpcsgd.lm.train CONFIG.toml [--section.key=value ...]

The MPI world, a check that the launcher and MPI agree on its size, the configuration from
the command line, and the exit code: 0 done, 2 (EXIT_CONFIG_ERROR) refused before any work,
or the code the run's summary asks for (hpcsgd.stop.EXIT_REQUEUE after a stop signal).
"""
from __future__ import annotations

import sys
from typing import Callable

from hpcsgd.config import Config, ConfigError, load_config
from hpcsgd.world import Refused, World, expected_world_size, init_world

EXIT_CONFIG_ERROR = 2


def config_from_argv(argv: list[str], module: str) -> Config:
    """``CONFIG.toml [--section.key=value ...]`` -> the validated tree; ConfigError otherwise."""
    if not argv or argv[0].startswith("--"):
        raise ConfigError(f"usage: python -m {module} CONFIG.toml [--section.key=value ...]")
    return load_config(argv[0], argv[1:])


def run_entry(prog: str, start: Callable[[list[str], World], dict],
              argv: list[str] | None = None) -> int:
    """Run ``start(argv, world) -> summary`` on every rank; return the process's exit code.

    ``start`` refuses bad input by raising Refused on every rank together (hpcsgd.world.agree);
    rank 0 prints it once, prefixed with ``prog``.
    """
    world = init_world()
    expected = expected_world_size()
    if expected is not None and expected != world.size:
        print(f"{prog}: the launcher started {expected} processes but MPI sees a world of "
              f"{world.size}: this mpiexec belongs to another MPI than mpi4py's "
              "(use the environment's own mpiexec)", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        summary = start(sys.argv[1:] if argv is None else argv, world)
    except Refused as e:
        if world.is_root:
            print(f"{prog}: refused: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return summary.get("exit_code", 0)
