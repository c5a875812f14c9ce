#!/usr/bin/env python3
"""Kept for scripts that call it: the same as `hpcsgd affinity plan|tune|compare` (hpcsgd/affinity/cli.py)."""
import sys

from hpcsgd.affinity.cli import main

sys.exit(main(prog="tools/affinity.py"))
