"""The hpcsgd command: one entry point for what a user runs.

    mpiexec -n 4 hpcsgd train CONFIG.toml [--section.key=value ...]   image classifiers
    mpiexec -n 4 hpcsgd lm CONFIG.toml [--section.key=value ...]      the PTB language model
    mpiexec -n 4 hpcsgd ensemble CONFIG.toml [--snapshots A.pt ...]   evaluate checkpoints
    hpcsgd collapsed-ensemble CONFIG.toml [--collapse-epochs 3] [--launcher "mpiexec -n 4"]
    hpcsgd train --help [SECTION ...]                                 every option, documented

(also ``python -m hpcsgd ...``; the modules stay runnable: ``python -m hpcsgd.train ...``).
Each subcommand is the module's own main(): the same arguments, exit codes and messages.
"""
from __future__ import annotations

import argparse
import sys


def _train(args):
    from hpcsgd.train import main
    return main(args)


def _lm(args):
    from hpcsgd.lm.train import main
    return main(args)


def _ensemble(args):
    from hpcsgd.ensemble import main
    return main(args)


def _collapsed(args):
    from hpcsgd.collapsed_ensemble import main
    return main(args)


COMMANDS = {
    "train": (_train, "train an image classifier (LMDB data) under mpiexec/srun"),
    "lm": (_lm, "train the LSTM language model (Penn Treebank) under mpiexec/srun"),
    "ensemble": (_ensemble, "evaluate checkpoints and their mean-softmax ensemble"),
    "collapsed-ensemble": (_collapsed, "Codreanu et al.'s collapsed ensemble: cyclic run, "
                                       "collapse branches, ensemble (one command)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="hpcsgd", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Synchronous data-parallel SGD on CPU clusters.",
        epilog="commands:\n" + "\n".join(f"  {name:20s}{text}" for name, (_, text)
                                         in COMMANDS.items())
        + "\n\n'hpcsgd COMMAND --help' for a command's own help ('hpcsgd train --help optim'"
          " lists the [optim] options).")
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    known = parser.parse_args(argv[:1])
    return COMMANDS[known.command][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
