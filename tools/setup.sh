#!/usr/bin/env bash
# tools/setup.sh — one set-up path for a fresh machine; idempotent, seconds when done.
#   1. Debian packages (after apt-get update): the Fashion-MNIST data set, tcmalloc.
#   2. .venv with hpcsgd (editable), torch 2.13.0 CPU, mpi4py + MPICH, lmdb, numpy, pytest.
# Every README command calls this first. Set HPCSGD_VENV to put the venv elsewhere.
# On a cluster, HPCSGD_MPICC=$(which mpicc) builds mpi4py against the site's MPI instead of
# installing the MPICH wheel (then launch with the site's mpirun/srun).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${HPCSGD_VENV:-$root/.venv}
python=${PYTHON:-python3}

# the data set, and tcmalloc: the training entry points preload it (compute.allocator =
# "auto", hpcsgd/cpu/allocator.py; ~1.3x on ResNet-50 here, docs/compute.md)
fmnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
tcmalloc_found=$(ls /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4 2>/dev/null | head -1 || true)
if [ ! -f "$fmnist" ] || [ -z "$tcmalloc_found" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing Debian packages dataset-fashion-mnist libtcmalloc-minimal4" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist \
        libtcmalloc-minimal4 >/dev/null
fi

# The stamp records what the venv was built from; rebuild only when that changes.
want=$( (cat "$root/setup.py" "$root/pyproject.toml"; echo "${HPCSGD_MPICC:-}") | sha256sum | cut -c1-16)
stamp=$venv/.hpcsgd-setup
# The venv must also import this checkout's hpcsgd: a venv shared with another clone or
# worktree may have been re-pointed at that one by its own set-up.
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && (cd / && "$venv/bin/python" -c "
import hpcsgd.train, torch, mpi4py, lmdb, sys
sys.exit(not hpcsgd.__file__.startswith('$root/'))") 2>/dev/null; then
    exit 0
fi
echo "setup: building $venv" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "torch==2.13.0"
if [ -n "${HPCSGD_MPICC:-}" ]; then
    "$venv/bin/pip" uninstall -q -y mpich 2>/dev/null || true
    MPICC=$HPCSGD_MPICC "$venv/bin/pip" install -q --no-binary mpi4py --no-cache-dir \
        --force-reinstall "mpi4py>=4.0,<5"
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$root[test]"
else
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$root[test,mpich]"
fi
"$venv/bin/python" - <<'PY'
from mpi4py import MPI
import torch, lmdb
lib = MPI.Get_library_version().splitlines()[0]
print(f"setup: torch {torch.__version__}, mpi4py with {lib}, lmdb {lmdb.version()}")
PY
echo "$want" > "$stamp"
