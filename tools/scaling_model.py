#!/usr/bin/env python3
"""Kept for scripts that call it: the same as `hpcsgd scaling report|time-to-train` (hpcsgd/scaling/cli.py)."""
import sys

from hpcsgd.scaling.cli import main

sys.exit(main(prog="tools/scaling_model.py"))
