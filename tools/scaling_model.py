#!/usr/bin/env python3
"""Kept for scripts that call it: `hpcsgd scaling report|time-to-train`
(hpcsgd/scaling/cli.py), the same arguments."""
import sys

from hpcsgd.scaling.cli import main

sys.exit(main(prog="tools/scaling_model.py"))
