#!/usr/bin/env python3
"""Kept for scripts that call it: `hpcsgd plot schedule`
(hpcsgd/plot/schedules.py), the same arguments."""
import sys

from hpcsgd.plot.schedules import main

sys.exit(main(prog="tools/plot_schedules.py"))
