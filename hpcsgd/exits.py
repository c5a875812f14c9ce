"""The exit codes of every hpcsgd command, in one place: a batch script branches on them
(jobs/slurm/run.sh requeues on EXIT_REQUEUE), so each means one thing everywhere."""
from __future__ import annotations

EXIT_DONE = 0
EXIT_REFUSED = 2
"""Refused before any work: a bad option or value, a missing file, an earlier run's folder,
a launcher/MPI mismatch. One line on stderr names what to change."""
EXIT_REQUEUE = 3
"""Stopped by SIGUSR1/SIGTERM at an agreed step after writing a checkpoint: requeue the job
with checkpoint.resume = "auto"."""
EXIT_STALL = 4
"""A collective unfinished after comm.stall_timeout_s, or ranks in different collectives; the
message names the collective and the ranks."""
EXIT_NONFINITE = 5
"""NaN/Inf in a step's loss or gradients (train.nonfinite = "stop", or too many skips)."""

MEANING = {EXIT_DONE: "done", EXIT_REFUSED: "refused before any work (bad option, missing "
           "data, an earlier run's folder)", EXIT_REQUEUE: "stopped by SIGUSR1/SIGTERM after "
           "a checkpoint (requeue with --checkpoint.resume=auto)", EXIT_STALL: "stall (the "
           "collective and the ranks named)", EXIT_NONFINITE: "NaN/Inf"}
