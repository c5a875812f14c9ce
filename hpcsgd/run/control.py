"""The one control collective of a training step: what every rank must agree on once the
gradients are averaged, in one fixed-size allreduce whatever the number of ranks.

    non-finite loss on some rank, non-finite averaged gradients,
    a stop signal (SIGUSR1/SIGTERM) received by some rank

Three integers, reduced with MIN (a MAX is a MIN of the negated value). Only when a loss was
non-finite does a second, rare allgather name every rank whose loss was (the message names
them all). Two collectives a step (the non-finite allgather, whose size grows with the ranks,
and the stop allreduce) were one too many.

The wait is polite (hpcsgd/run/watch.py): a non-blocking allreduce tested every POLL_S seconds
with a sleep in between, so a rank that arrives early gives its core to the ranks still
computing instead of spinning inside MPI. With ranks sharing cores (4 ranks on this 2-core
machine) the spinning blocking allgather halved the LSTM trainer's throughput (4590 -> 2146
tokens/s, 200 PTB steps); the added latency is at most POLL_S a step. It is watched: a rank
that never arrives ends the job with the stall exit code, named.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hpcsgd.mpi_start import MPI

from hpcsgd.run.watch import Watch


@dataclass(frozen=True)
class StepAgreement:
    loss_ranks: tuple[int, ...]
    """Ranks whose loss was NaN/Inf in one of the step's micro-batches."""
    gradients_bad: bool
    """The averaged gradients hold a NaN or Inf (on some rank's view of them)."""
    signum: int
    """A stop signal any rank received (0 = none)."""


def agree_step(comm: MPI.Comm, *, loss_finite: bool, gradients_finite: bool,
               signum: int, watch: Watch, step: int = 0) -> StepAgreement:
    """Collective: one 3-integer allreduce (MIN); a second one names the ranks only when a
    loss was non-finite somewhere."""
    local = np.array([-int(not loss_finite),                   # -(any bad loss)
                      -int(not gradients_finite),              # -(gradients bad anywhere)
                      -int(signum)], np.int64)                 # -(highest signal number)
    watch.wait(comm.Iallreduce(MPI.IN_PLACE, local, op=MPI.MIN),
               f"the control collective of step {step}")
    loss_ranks: tuple[int, ...] = ()
    if local[0] < 0:  # rare: name every rank whose loss was not finite
        flags = np.array([int(not loss_finite)], np.int64)
        every = np.empty(comm.size, np.int64)
        watch.wait(comm.Iallgather(flags, every), f"naming the non-finite ranks of step {step}")
        loss_ranks = tuple(int(r) for r in np.flatnonzero(every))
    return StepAgreement(loss_ranks=loss_ranks, gradients_bad=bool(local[1] < 0),
                         signum=int(-local[2]))
