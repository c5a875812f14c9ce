"""The papers' learning-rate curves as pure functions of the (fractional) epoch.

Each function returns the LR at one moment; hpcsgd/schedule/plan.py composes them into the run's
plan. Epochs are fractional (iteration / iterations per epoch), so every warmup and decay is
per iteration, as in Caffe's solvers, not per epoch.
"""
from __future__ import annotations

import math

from hpcsgd.config.choices import Warmup, choices

WARMUPS = choices(Warmup)  # the option's words, typed once in hpcsgd/config/choices.py


def warmup(epoch: float, *, kind: str, warmup_epochs: float, start_lr: float,
           peak_lr: float) -> float:
    """LR during warmup (epoch < warmup_epochs).

    linear:    Goyal et al. 2.2 gradual warmup, start -> peak in a straight line.
    constant:  You et al. 2.3 constant warmup, the start LR throughout.
    quadratic: DATE Algorithm 1 line 5, (E/w)^2 ramp.
    """
    frac = min(max(epoch / warmup_epochs, 0.0), 1.0)
    if kind == "linear":
        return start_lr + (peak_lr - start_lr) * frac
    if kind == "constant":
        return start_lr if frac < 1.0 else peak_lr
    if kind == "quadratic":
        return start_lr + (peak_lr - start_lr) * frac ** 2
    raise ValueError(f"warmup kind {kind!r}: must be one of {', '.join(WARMUPS)}")


def linear_warmup(epoch: float, *, warmup_epochs: float, start_lr: float, peak_lr: float) -> float:
    return warmup(epoch, kind="linear", warmup_epochs=warmup_epochs, start_lr=start_lr,
                  peak_lr=peak_lr)


def poly(progress: float, *, power: float, peak_lr: float, end_lr: float = 0.0) -> float:
    """progress in [0, 1] -> LR falling from peak_lr to end_lr as (1 - progress)^power.

    power 1 = Codreanu et al. IV-D's linear decay; power 2 = You et al.'s LARS runs.
    """
    return end_lr + (peak_lr - end_lr) * (1.0 - min(max(progress, 0.0), 1.0)) ** power


def cosine(progress: float, *, peak_lr: float, end_lr: float = 0.0) -> float:
    return end_lr + 0.5 * (peak_lr - end_lr) * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def multistep(epoch: float, *, peak_lr: float, milestones, gamma: float) -> float:
    """Goyal et al.: x gamma at each milestone epoch reached (x0.1 at 30, 60, 80)."""
    return peak_lr * gamma ** sum(epoch >= m for m in milestones)


def roller_coaster(epoch: float, *, total_epochs: float, formula_warmup: float, peak_lr: float,
                   floor: float) -> float:
    """DATE 3.4: eta = max{(T - t) / ((1 - w/E) T) * peak, floor}, t/T = epoch/E.

    In epochs: (E - e) / (E - w) * peak. With w the run's own warmup this falls linearly
    from the peak at the end of warmup to 0 at the end (clamped at the floor, 1e-6 in DATE);
    with the baseline's w0 (DATE's worked LeNet example writes 1 - 2/30) the LR drops at the
    end of the warmup to (E - w)/(E - w0) of the peak, then falls linearly.
    """
    frac = (total_epochs - epoch) / (total_epochs - formula_warmup)
    return max(frac * peak_lr, floor)


def poly_horizon(duration: float, *, ratio: float, power: float) -> float:
    """Horizon L of a Caffe poly decay lr0 (1 - t/L)^power that reaches ratio * lr0 at t = duration.

    Codreanu VI: "the decay is computed such that after 12 epochs, the LR is divided by 4":
    power 2, ratio 1/4 -> L = 24 epochs.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"poly ratio {ratio!r}: must be in (0, 1)")
    return duration / (1.0 - ratio ** (1.0 / power))


def poly_from(epoch: float, *, start_epoch: float, start_lr: float, horizon: float,
              power: float) -> float:
    """Caffe poly from start_lr at start_epoch, reaching 0 at start_epoch + horizon."""
    progress = (epoch - start_epoch) / horizon
    return start_lr * (1.0 - min(max(progress, 0.0), 1.0)) ** power


def collapse(epoch: float, *, start_epoch: float, end_epoch: float, start_lr: float,
             power: float) -> float:
    """Codreanu V-B2 collapse: from the LR where it left off, poly (power 2) down to 0 at the end."""
    return poly_from(epoch, start_epoch=start_epoch, start_lr=start_lr,
                     horizon=end_epoch - start_epoch, power=power)


def cyclic_cycle_ends(*, start: float, cycle_epochs: float, total_epochs: float) -> list[float]:
    """Epochs at which the cycles of Codreanu's Fig. 4 end (5 cycles of 15: 60, 75, ..., 120)."""
    n = (total_epochs - start) / cycle_epochs
    if n < 1 - 1e-9 or abs(n - round(n)) > 1e-6:
        raise ValueError(f"cycles of {cycle_epochs} epochs from epoch {start} do not end at "
                         f"epoch {total_epochs} ({n:.4g} cycles)")
    return [start + (i + 1) * cycle_epochs for i in range(round(n))]


def codreanu_cyclic(epoch: float, *, peak_lr: float, warmup_end: float, total_epochs: float,
                    linear_until: float, start: float, start_ratio: float, rewarm_epochs: float,
                    rewarm_factor: float, decay_epochs: float, decay_factor: float,
                    power: float) -> tuple[float, str]:
    """Codreanu et al. VI (Fig. 4) after warmup -> (LR, segment: "linear", "power", "rewarm").

    1. "linear": poly power 1 from the peak at warmup_end towards 0 at total_epochs, until
       linear_until (30);
    2. "power": power-2 poly from there whose horizon makes the LR start_ratio * peak at
       `start` (45, about 22%);
    3. cycles: "rewarm" = linear x rewarm_factor over rewarm_epochs (x3 over 3), then
       "power" = power-2 poly dividing that top LR by decay_factor over decay_epochs
       (/4 over 12); cycle k ends at start + k (rewarm + decay): 60, 75, 90, 105, 120.
    """
    linear_end_lr = poly((linear_until - warmup_end) / (total_epochs - warmup_end), power=1.0,
                         peak_lr=peak_lr)
    if epoch < linear_until:
        return poly((epoch - warmup_end) / (total_epochs - warmup_end), power=1.0,
                    peak_lr=peak_lr), "linear"
    start_lr = start_ratio * peak_lr
    if epoch < start:
        horizon = poly_horizon(start - linear_until, ratio=start_lr / linear_end_lr, power=power)
        return poly_from(epoch, start_epoch=linear_until, start_lr=linear_end_lr,
                         horizon=horizon, power=power), "power"
    cycle = rewarm_epochs + decay_epochs
    k = min(int((epoch - start) // cycle), round((total_epochs - start) / cycle) - 1)
    cycle_lr = start_lr * (rewarm_factor / decay_factor) ** k  # LR at this cycle's start
    t = epoch - (start + k * cycle)
    top_lr = cycle_lr * rewarm_factor
    if t < rewarm_epochs:
        return cycle_lr + (top_lr - cycle_lr) * t / rewarm_epochs, "rewarm"
    if decay_factor == 1.0:
        return top_lr, "power"
    horizon = poly_horizon(decay_epochs, ratio=1.0 / decay_factor, power=power)
    return poly_from(epoch, start_epoch=start + k * cycle + rewarm_epochs, start_lr=top_lr,
                     horizon=horizon, power=power), "power"
