"""NaN or Inf in the loss or the gradients: every rank agrees on what happened, then the step
is skipped or the run stops, naming the iteration and the ranks (train.nonfinite).

One check per optimizer step, after the gradient allreduce: each rank's (loss finite,
gradients finite) flags travel in the step's one control collective (hpcsgd/run/control.py), so
every rank takes the same decision. The
gradient check is one fused norm over all gradients (a pass over them, ~1% of a ResNet-50
step here). "skip" also restores the model's buffers (BatchNorm running statistics) to their
state before the step: a non-finite forward pass has already updated them, and evaluation
would average the NaN into every rank. "ignore" checks nothing (NaN propagates, as in runs
that study divergence).
"""
from __future__ import annotations

from hpcsgd.exits import EXIT_NONFINITE
import math
from dataclasses import dataclass

import torch

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


class NonFiniteGuard:
    """train.nonfinite for one run: call before_step() before a step's first micro-batch,
    local_flags() once its gradients are averaged, and decide() with the agreed flags."""

    def __init__(self, policy: str, max_skips: int, comm, model, skips: int = 0):
        self.policy, self.max_skips, self.comm, self.model = policy, max_skips, comm, model
        self.skips = skips
        """Steps skipped so far in this run (saved in checkpoints through Progress)."""
        self._buffers: list[torch.Tensor] = []

    def before_step(self) -> None:
        if self.policy == "skip":  # BatchNorm statistics: a few hundred KB for ResNet-50
            self._buffers = [b.detach().clone() for b in self.model.buffers()]

    def local_flags(self, losses: list[float]) -> tuple[bool, bool]:
        """(this rank's losses finite, the averaged gradients finite) for the step's control
        collective (hpcsgd/run/control.py); "ignore" checks nothing."""
        if self.policy == "ignore":
            return True, True
        return all(map(math.isfinite, losses)), gradients_finite(self.model.parameters())

    def decide(self, step: int, agreement) -> tuple[str, NonFinite | None]:
        """("update", None), or ("skip" | "stop", what was wrong): the same on every rank,
        from the agreed flags."""
        if self.policy == "ignore" or not (agreement.loss_ranks or agreement.gradients_bad):
            return "update", None
        bad = NonFinite(step=step, loss_ranks=agreement.loss_ranks,
                        gradients=agreement.gradients_bad)
        self.skips += 1
        if self.policy == "stop" or self.skips > self.max_skips:
            return "stop", bad
        with torch.no_grad():
            for buffer, saved in zip(self.model.buffers(), self._buffers):
                buffer.copy_(saved)
        return "skip", bad

    def message(self, action: str, bad: NonFinite) -> str:
        if action == "skip":
            return (f"{bad.describe()}: update skipped, buffers restored ({self.skips} of at "
                    f"most {self.max_skips})")
        return (f"{bad.describe()}: update refused, stopping (train.nonfinite = "
                f"{self.policy!r}, {self.skips} non-finite step(s)), exit {EXIT_NONFINITE}")
