#!/bin/bash
# exec "$SLURM_SUBMIT_DIR/jobs/slurm/run.sh" JOB.toml [--section.key=value ...]
#   the body of every Slurm script under jobs/ (they are submitted with `sbatch jobs/<site>/<row>.sbatch`
#   from the repository root); by itself: HPCSGD_LAUNCH="mpiexec -n 2" jobs/slurm/run.sh JOB.toml
# Runs one launch of `python -m hpcsgd.train JOB.toml --checkpoint.resume=auto` (a requeued job
# continues from its newest checkpoint, a fresh one starts from scratch) and handles pre-emption:
# `#SBATCH --signal=B:USR1@600` sends USR1 to this shell 10 minutes before the time limit; it is
# forwarded to the launcher (srun and mpiexec pass it on to every rank); the ranks agree to stop
# at the next step boundary, write a checkpoint and exit 3 (hpcsgd/run/stop.py EXIT_REQUEUE), and this
# script requeues the job (scontrol requeue), which resumes from that checkpoint.
# Environment: HPCSGD_LAUNCH (default "srun"), HPCSGD_PYTHON (default .venv/bin/python).
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
job=${1:?usage: run.sh JOB.toml [--section.key=value ...]}
shift
launch=${HPCSGD_LAUNCH:-srun}
python=${HPCSGD_PYTHON:-.venv/bin/python}
EXIT_REQUEUE=3

step=
forward() {
    echo "[hpcsgd run.sh] $(date -Is) USR1: asking the ranks to checkpoint and stop"
    [ -n "$step" ] && kill -USR1 "$step" 2>/dev/null
}
trap forward USR1

echo "[hpcsgd run.sh] $(date -Is) job ${SLURM_JOB_ID:-local} restart ${SLURM_RESTART_COUNT:-0}: $launch $python -m hpcsgd.train $job --checkpoint.resume=auto $*"
# $launch is split into words on purpose ("srun --cpu-bind=none", "mpiexec -n 4")
$launch "$python" -m hpcsgd.train "$job" --checkpoint.resume=auto "$@" &
step=$!
wait "$step"
rc=$?
# a trapped USR1 interrupts `wait` with 128+10 while the step still runs: wait again for its
# own exit code (127 = it was already collected, i.e. rc was the step's own status)
while [ "$rc" -gt 128 ]; do
    wait "$step"
    again=$?
    [ "$again" -eq 127 ] && break
    rc=$again
done

if [ "$rc" -eq "$EXIT_REQUEUE" ]; then
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        echo "[hpcsgd run.sh] $(date -Is) checkpoint written: requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID"
    else
        echo "[hpcsgd run.sh] checkpoint written; run the same command again to resume"
    fi
fi
exit "$rc"
