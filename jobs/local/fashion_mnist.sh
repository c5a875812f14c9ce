#!/usr/bin/env bash
# jobs/local/fashion_mnist.sh — the main local job: set-up, data, then 4-rank training.
#   jobs/local/fashion_mnist.sh [--section.key=value ...]
# runs: mpiexec -n 4 .venv/bin/python -m hpcsgd.train jobs/local/fashion_mnist.toml
set -euo pipefail
cd "$(dirname "$0")/../.."
tools/setup.sh
.venv/bin/hpcsgd convert fashion-mnist --out data/fashion-mnist
# The environment's own mpiexec (MPICH from the venv), matching mpi4py's MPI library.
exec .venv/bin/mpiexec -n 4 .venv/bin/python -m hpcsgd.train jobs/local/fashion_mnist.toml "$@"
