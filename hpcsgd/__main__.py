"""python -m hpcsgd: the hpcsgd command (hpcsgd/cli.py)."""
import sys

from hpcsgd.cli import main

sys.exit(main())
