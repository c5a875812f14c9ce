#!/usr/bin/env python3
"""Kept for scripts that call it: `hpcsgd affinity plan|tune|compare`
(hpcsgd/affinity/cli.py), the same arguments."""
import sys

from hpcsgd.affinity.cli import main

sys.exit(main(prog="tools/affinity.py"))
