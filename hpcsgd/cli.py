"""The hpcsgd command: one entry point for what a user runs.

    mpiexec -n 4 hpcsgd train CONFIG.toml [--section.key=value ...]   image classifiers
    mpiexec -n 4 hpcsgd lm CONFIG.toml [--section.key=value ...]      the PTB language model
    hpcsgd convert fashion-mnist|imagenet ...                         data sets -> LMDBs
    hpcsgd plot run runs/<name> ... | hpcsgd plot schedule JOB.toml --out F.png
    hpcsgd affinity plan --config JOB.toml                            cores and launcher flags
    hpcsgd scaling report | hpcsgd scaling time-to-train --job JOB.toml
    hpcsgd COMMAND --help                                             each command's options

(also ``python -m hpcsgd ...``; the modules stay runnable: ``python -m hpcsgd.train ...``).
Each command is its module's own main(argv, prog): the same arguments, exit codes (2 for a
user error, in one line) and messages; this file only dispatches, importing a command's module
when it runs (``hpcsgd --help`` imports neither torch nor matplotlib).
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import sys

# name -> (module with main(argv, prog), one line for hpcsgd --help). A group's subcommands
# are either listed (each its own module) or handled by the module's own subparsers.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("hpcsgd.train", "train an image classifier (LMDB data) under mpiexec/srun"),
    "lm": ("hpcsgd.lm.train", "train the LSTM language model (Penn Treebank) under mpiexec/srun"),
    "lm-score": ("hpcsgd.lm.score", "a language model's NLL on its evaluation text, sentence "
                 "by sentence"),
    "ensemble": ("hpcsgd.ensemble", "evaluate checkpoints and their mean-softmax ensemble"),
    "collapsed-ensemble": ("hpcsgd.collapsed_ensemble",
                           "cyclic run, collapsed branches, their ensemble (Codreanu et al.)"),
}
GROUPS: dict[str, dict[str, tuple[str, str]]] = {
    "convert": {
        "fashion-mnist": ("hpcsgd.convert.fashion_mnist",
                          "Fashion-MNIST IDX files -> train/test/fit/val LMDBs"),
        "imagenet": ("hpcsgd.convert.imagenet",
                     "an ImageNet-style folder (train/<wnid>/*.JPEG) -> JPEG LMDBs"),
    },
    "plot": {
        "run": ("hpcsgd.plot.run", "a run folder's curves as a PNG (several runs overlaid)"),
        "schedule": ("hpcsgd.plot.schedules",
                     "a job's LR and weight decay per iteration as a PNG (or the papers')"),
    },
}
# groups whose module parses its own subcommand (argparse subparsers)
NESTED: dict[str, tuple[str, dict[str, str]]] = {
    "affinity": ("hpcsgd.affinity.cli", {
        "plan": "each rank's compute/comm/data cores and the matching launcher flags",
        "tune": "measure candidate core layouts on this node (benchmark)",
        "compare": "pinned against unpinned training throughput (benchmark)"}),
    "scaling": ("hpcsgd.scaling.cli", {
        "report": "regenerate docs/scaling.md and its plots from the scaling model",
        "time-to-train": "predicted time to train of a job or configuration (JSON)"}),
}


def command_lines() -> list[tuple[str, str]]:
    """(command, one line) for every command a user can type, in --help order."""
    lines = [(name, text) for name, (_, text) in COMMANDS.items()]
    for group, subs in GROUPS.items():
        lines += [(f"{group} {name}", text) for name, (_, text) in subs.items()]
    for group, (_, subs) in NESTED.items():
        lines += [(f"{group} {name}", text) for name, text in subs.items()]
    return lines


def _run(module: str, argv: list[str], prog: str) -> int:
    main = importlib.import_module(module).main
    if "prog" in inspect.signature(main).parameters:
        return main(argv, prog=prog)
    return main(argv)  # the trainers name themselves in their own usage lines


def _group_parser(group: str, subs: dict[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"hpcsgd {group}", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:16s}{t}" for n, t in subs.items())
        + f"\n\n'hpcsgd {group} COMMAND --help' for a command's options.")
    parser.add_argument("command", choices=subs, metavar="COMMAND",
                        help="one of the commands below")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    width = max(len(name) for name, _ in command_lines()) + 2
    parser = argparse.ArgumentParser(
        prog="hpcsgd", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Synchronous data-parallel SGD on CPU clusters.",
        epilog="commands:\n" + "\n".join(f"  {name:{width}s}{text}"
                                         for name, text in command_lines())
        + "\n\n'hpcsgd COMMAND --help' for a command's own help ('hpcsgd train --help optim'"
          " lists the [optim] options).")
    parser.add_argument("command", choices=[*COMMANDS, *GROUPS, *NESTED], metavar="COMMAND",
                        help="one of the commands below")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command = parser.parse_args(argv[:1]).command
    if command in COMMANDS:
        return _run(COMMANDS[command][0], argv[1:], f"hpcsgd {command}")
    if command in NESTED:
        module, subs = NESTED[command]
        return _run(module, argv[1:], f"hpcsgd {command}")
    subs = {name: text for name, (_, text) in GROUPS[command].items()}
    group = _group_parser(command, subs)
    rest = argv[1:]
    if not rest or rest[0] in ("-h", "--help"):
        group.print_help()
        return 0 if rest else 2
    name = group.parse_args(rest[:1]).command
    return _run(GROUPS[command][name][0], rest[1:], f"hpcsgd {command} {name}")


if __name__ == "__main__":
    sys.exit(main())
