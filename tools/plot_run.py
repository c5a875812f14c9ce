#!/usr/bin/env python3
"""Kept for scripts that call it: `hpcsgd plot run`
(hpcsgd/plot/run.py), the same arguments."""
import sys

from hpcsgd.plot.run import main

sys.exit(main(prog="tools/plot_run.py"))
