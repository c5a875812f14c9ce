#!/usr/bin/env python3
"""Kept for scripts that call it: `hpcsgd convert imagenet`
(hpcsgd/convert/imagenet.py), the same arguments."""
import sys

from hpcsgd.convert.imagenet import main

sys.exit(main(prog="tools/imagenet_to_lmdb.py"))
