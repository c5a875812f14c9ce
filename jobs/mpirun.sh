#!/bin/bash
# jobs/mpirun.sh JOB.toml [--section.key=value ...]
#   e.g. inside an allocation: jobs/mpirun.sh jobs/stampede2/tableii_row1_b8192_n256_e90.toml
# runs: mpirun -n NODES*RANKS_PER_NODE -ppn RANKS_PER_NODE .venv/bin/python -m hpcsgd.train JOB.toml --checkpoint.resume=auto
# with NODES and RANKS_PER_NODE from the job's [cluster] section (1 and 1 when absent). The
# generic launch for any MPI (the site's mpirun must be the one mpi4py was built against;
# README, "On a cluster"). hpcsgd pins its threads inside each rank, so the launcher must not
# narrow a rank to one core or socket first: Open MPI binds by default, so it gets
# `--bind-to none --npernode N` (detected from `mpirun --version`); MPICH and Intel MPI take
# `-ppn N` and do not bind unless asked. `.venv/bin/hpcsgd affinity plan --config JOB.toml` prints
# explicit binding flags for each library instead.
# Environment: MPIRUN (default mpirun), PPN_FLAG (default: -ppn, or --npernode for Open MPI),
# HPCSGD_PYTHON (default .venv/bin/python). Exit 3: stopped by SIGUSR1/SIGTERM after a
# checkpoint; the same command resumes.
set -euo pipefail
usage="usage: jobs/mpirun.sh JOB.toml [--section.key=value ...]   (jobs/mpirun.sh --help)"
case "${1:-}" in
    "") echo "$usage" >&2; exit 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
job=$1
shift
[ -f "$job" ] || { echo "jobs/mpirun.sh: job file '$job' does not exist" >&2; exit 2; }
job=$(cd "$(dirname "$job")" && pwd)/$(basename "$job")
cd "$(dirname "$0")/.."
python=${HPCSGD_PYTHON:-.venv/bin/python}
read -r nodes ranks_per_node < <("$python" -c '
import sys, tomllib
try:
    cluster = tomllib.load(open(sys.argv[1], "rb")).get("cluster", {})
except tomllib.TOMLDecodeError as e:
    sys.exit(f"jobs/mpirun.sh: {sys.argv[1]}: not valid TOML: {e}")
print(cluster.get("nodes") or 1, cluster.get("ranks_per_node") or 1)' "$job")
# the site's mpirun; without one, the environment's own (MPICH from the venv)
default_mpirun=mpirun
command -v mpirun >/dev/null 2>&1 || default_mpirun=$(dirname "$python")/mpiexec
mpirun=${MPIRUN:-$default_mpirun}
command -v "$mpirun" >/dev/null 2>&1 || {
    echo "jobs/mpirun.sh: no '$mpirun' (set MPIRUN to your MPI's launcher)" >&2; exit 2; }
bind=() ppn=${PPN_FLAG:--ppn}
if "$mpirun" --version 2>&1 | grep -q "Open MPI"; then
    bind=(--bind-to none) ppn=${PPN_FLAG:---npernode}
fi
exec "$mpirun" -n $((nodes * ranks_per_node)) "${bind[@]}" "$ppn" "$ranks_per_node" \
    "$python" -m hpcsgd.train "$job" --checkpoint.resume=auto "$@"
