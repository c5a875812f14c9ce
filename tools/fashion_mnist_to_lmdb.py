#!/usr/bin/env python3
"""Kept for scripts that call it: `hpcsgd convert fashion-mnist`
(hpcsgd/convert/fashion_mnist.py), the same arguments."""
import sys

from hpcsgd.convert.fashion_mnist import main

sys.exit(main(prog="tools/fashion_mnist_to_lmdb.py"))
