"""The memory allocator of a training process (compute.allocator), preloaded as PyTorch's own
CPU launcher (torch.backends.xeon.run_cpu --enable-tcmalloc) and Intel's guides do.

Each training step frees and re-allocates gigabytes of activations (and, in a plain loop,
the gradients): glibc's malloc returns those large blocks to the kernel and page-faults them
back every step, tcmalloc and jemalloc keep them. Measured here (docs/compute.md).

An allocator must be in place before the process's first allocation, so it is preloaded
(LD_PRELOAD) and the entry point re-executes itself once, before MPI starts (mpi4py
initialises MPI when imported; a process that re-executes after MPI_Init would break its
launcher's PMI connection) and before any thread: ``reexec_with_allocator()`` is called
from the package's ``__init__`` and acts only for the training entry points. Whatever the
launcher (the job scripts, ``mpiexec -n 4 .venv/bin/python -m hpcsgd.train ...``, ``srun``),
every rank does it for itself.

    "auto"      tcmalloc if found, else jemalloc, else the system's (and the banner says so)
    "tcmalloc", "jemalloc"   that one, refused if not found
    "system"    glibc malloc
    PATH        a library file to preload

Search: $LD_LIBRARY_PATH (a site's modules), then the usual library folders.
"""
from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

LIBRARIES = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so",
                 "libtcmalloc.so"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
}
AUTO_ORDER = ("tcmalloc", "jemalloc")
"""auto's preference: the order measured fastest for the trainer here (docs/compute.md)."""
SYSTEM_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib",
               "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu")
DONE_ENV = "HPCSGD_ALLOCATOR"
"""Set by the re-execution: what was chosen (so it happens once)."""
SEARCH_ENV = "HPCSGD_ALLOCATOR_DIRS"
"""Replaces the search path (tests simulate a machine without tcmalloc with it)."""
ENTRY_MODULES = ("hpcsgd.train", "hpcsgd.lm.train")
ENTRY_COMMANDS = ("train", "lm")


class AllocatorError(ValueError):
    pass


def search_dirs() -> list[str]:
    if SEARCH_ENV in os.environ:
        return [d for d in os.environ[SEARCH_ENV].split(":") if d]
    site = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    prefix = [str(Path(sys.prefix) / "lib")]
    return site + prefix + list(SYSTEM_DIRS)


def find(name: str, dirs: list[str] | None = None) -> str | None:
    for folder in dirs if dirs is not None else search_dirs():
        for lib in LIBRARIES[name]:
            path = Path(folder) / lib
            if path.is_file():
                return str(path)
    return None


def resolve(choice: str, dirs: list[str] | None = None) -> tuple[str, str | None]:
    """compute.allocator -> (label, library to preload or None for the system's)."""
    if choice == "system":
        return "system malloc", None
    if choice == "auto":
        for name in AUTO_ORDER:
            path = find(name, dirs)
            if path:
                return name, path
        return "system malloc (auto: neither tcmalloc nor jemalloc found)", None
    if choice in LIBRARIES:
        path = find(choice, dirs)
        if path is None:
            raise AllocatorError(
                f"compute.allocator = {choice!r}: no {' or '.join(LIBRARIES[choice])} in "
                f"{':'.join(dirs if dirs is not None else search_dirs())} (install it, e.g. "
                "Debian's libtcmalloc-minimal4, or set compute.allocator = \"auto\")")
        return choice, path
    if not Path(choice).is_file():
        raise AllocatorError(f"compute.allocator = {choice!r}: not 'auto', 'tcmalloc', "
                             "'jemalloc', 'system', or an existing library file")
    return Path(choice).name, str(Path(choice).resolve())


def in_use() -> str:
    """What this process allocates with: read from its own memory map."""
    label = os.environ.get(DONE_ENV, "")
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return label or "unknown"
    for name in AUTO_ORDER:
        if f"lib{name}" in maps:
            return name if not label or label.startswith(name) else f"{name} ({label})"
    return label if label.startswith("system") else "system malloc"


def _entry_args(cmdline: list[str]) -> list[str] | None:
    """The training entry point's own arguments (CONFIG.toml [--overrides]) or None when this
    process is not one (a test run, a tool, the ensemble...)."""
    if "-m" in cmdline[1:-1]:
        at = cmdline.index("-m", 1)
        module, rest = cmdline[at + 1], cmdline[at + 2:]
        if module in ENTRY_MODULES:
            return rest
        if module == "hpcsgd" and rest[:1] and rest[0] in ENTRY_COMMANDS:
            return rest[1:]
        return None
    if len(cmdline) >= 3 and Path(cmdline[1]).name == "hpcsgd" and cmdline[2] in ENTRY_COMMANDS:
        return cmdline[3:]  # the console script: python .venv/bin/hpcsgd train ...
    return None


def configured_choice(args: list[str]) -> str:
    """compute.allocator from the command line or the TOML file, read without the config
    package (it imports torch and MPI); the full validation comes later."""
    for arg in reversed(args):
        if arg.startswith("--compute.allocator="):
            return arg.partition("=")[2].strip("\"'")
    if args and not args[0].startswith("-") and Path(args[0]).is_file():
        try:
            table = tomllib.loads(Path(args[0]).read_text())
            value = table.get("compute", {}).get("allocator")
            if isinstance(value, str):
                return value
        except (tomllib.TOMLDecodeError, OSError, AttributeError):
            pass  # the config loader reports it properly
    return "auto"


def reexec_with_allocator() -> None:
    """For a training entry point: preload the configured allocator and re-execute this
    process once (before MPI and threads start). Anything unclear is left to the config
    validation, which refuses it with a message."""
    if DONE_ENV in os.environ:
        return
    try:
        cmdline = [a.decode() for a in Path("/proc/self/cmdline").read_bytes().split(b"\0")
                   if a]
    except OSError:
        return
    args = _entry_args(cmdline)
    if args is None or any(a in ("-h", "--help") for a in args):
        return
    try:
        label, path = resolve(configured_choice(args))
    except AllocatorError:
        return  # refused with its message by the config validation, before any work
    os.environ[DONE_ENV] = label
    preload = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p]
    if path is None or path in preload:
        return  # the system's malloc, or preloaded already (e.g. by the job script)
    env = dict(os.environ, LD_PRELOAD=":".join([path] + preload))
    os.execve(sys.executable, [sys.executable] + cmdline[1:], env)
