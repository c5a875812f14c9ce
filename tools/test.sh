#!/usr/bin/env bash
# tools/test.sh — the whole test suite on a fresh machine (does its own set-up).
#   tools/test.sh [extra pytest args]
# 1. unit tests + the MPI tests in a 1-rank world + the tests that launch mpiexec themselves;
# 2. the MPI tests again under a real `mpiexec -n 4`, asserting the world size is 4.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
py=.venv/bin/python

echo "== tests (1 process) =="
$py -m pytest tests -q "$@"

echo "== MPI tests under mpiexec -n 4 =="
# A failing rank aborts the job (tests/mpi/conftest.py); the timeout is a last resort.
HPCSGD_EXPECT_WORLD=4 timeout 900 .venv/bin/mpiexec -n 4 \
    $py -m pytest tests/mpi -q -p no:cacheprovider "$@"
echo "== all tests passed =="
