"""NaN or Inf in the loss or the gradients: every rank agrees on what happened, then the step
is skipped or the run stops, naming the iteration and the ranks (train.nonfinite).

One check per optimizer step, after the gradient allreduce. The loss is local to each rank.
The averaged gradients are the same on every rank: a NaN or Inf on any rank reaches all of
them through the sum. So one small allgather of each rank's loss flag is all the agreement
needs; the gradient check then gives the same answer everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

EXIT_NONFINITE = 5
"""Exit code of a run stopped by a non-finite loss or gradient (train.nonfinite = "stop")."""


@dataclass(frozen=True)
class NonFinite:
    step: int
    """The optimizer step (1-based, as in the metrics log) whose update is refused."""
    loss_ranks: tuple[int, ...]
    """Ranks whose loss was NaN or Inf in one of the step's micro-batches."""
    gradients: bool
    """The averaged gradients hold a NaN or Inf (or their norm overflows fp32)."""

    def describe(self) -> str:
        parts = []
        if self.loss_ranks:
            parts.append(f"loss is NaN/Inf on rank(s) {list(self.loss_ranks)}")
        if self.gradients:
            parts.append("the averaged gradients are NaN/Inf")
        return f"step {self.step}: " + " and ".join(parts)


def gradients_finite(parameters) -> bool:
    """True when every gradient is finite: one fused norm over all of them."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return True
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=2.0)))


def check_step(comm, step: int, loss_finite: bool, parameters) -> NonFinite | None:
    """Collective: None when the step may update, else what was wrong (same on all ranks)."""
    flags = comm.allgather(bool(loss_finite))
    bad_loss = tuple(r for r, ok in enumerate(flags) if not ok)
    grads_ok = gradients_finite(parameters)
    if not bad_loss and grads_ok:
        return None
    return NonFinite(step=step, loss_ranks=bad_loss, gradients=not grads_ok)
