"""The run's schedule plan: LR, weight decay, augmentation mode and snapshots at any iteration.

A pure function of (iteration, iterations per epoch, config): ``plan_at``. The trainer holds a
``Schedule`` (``build_schedule(cfg, steps_per_epoch)``) and calls ``schedule.at(epoch)`` with
the fractional epoch ``step / steps_per_epoch`` before every optimizer step.

Composition (every piece in hpcsgd/schedule/curves.py, hpcsgd/schedule/scaling.py):
1. peak LR = optim.base_lr, or lr0 scaled from the baseline batch (linear / sqrt rule);
2. warmup (linear, constant, quadratic) over warmup_epochs, or LEGW's w0 * B/B0;
3. decay: poly, cosine, multistep, constant, DATE's roller coaster, Codreanu's cycles;
4. Codreanu's collapse over the last epochs: power-2 poly from where the LR was, weight decay
   x2, scale/aspect augmentation off (``SchedulePoint.collapse``); or, in a collapse branch
   (``branch_from``), the same collapse from a snapshot of the main run (Codreanu VI);
5. weight decay: optim.weight_decay, stepped at wd_milestones, times the collapse factor.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from hpcsgd.schedule import curves as lr_curves
from hpcsgd.config.recipe import ScheduleConfig
from hpcsgd.config.tree import Config  # not the package: config/validate.py imports this module
from hpcsgd.config.errors import refuse
from hpcsgd.schedule.scaling import legw_warmup_epochs, scaled_lr

EPS = 1e-9


@dataclass(frozen=True)
class SchedulePoint:
    """Everything the schedule sets at one moment of training."""
    lr: float
    weight_decay: float
    collapse: bool = False
    """Codreanu et al. V-B2 collapse phase: the data path turns scale/aspect augmentation off."""
    snapshot: bool = False
    """The weights after this many completed iterations are a snapshot (Codreanu VI cycles)."""
    phase: str = ""
    """"warmup", "decay", "rewarm" or "collapse" (for logs and plots)."""


@dataclass(frozen=True)
class Plan:
    """The numbers a schedule config resolves to for one run (batch and epochs known)."""
    schedule: ScheduleConfig
    peak_lr: float
    """Peak LR after the scaling rule."""
    warmup_epochs: float
    """Warmup length after LEGW."""
    total_epochs: float
    base_weight_decay: float
    collapse_start: float | None
    """Epoch at which the final collapse starts (None: no collapse phase)."""
    end_epochs: float
    """Where the run ends: total_epochs, or a collapse branch's branch_from + collapse_epochs
    (the main curve keeps total_epochs as its horizon)."""


# ---------------------------------------------------------------------------- pure pieces

def main_lr(epoch: float, cfg: ScheduleConfig, *, peak_lr: float, warmup_epochs: float,
            total_epochs: float) -> tuple[float, str]:
    """Warmup then decay, before any final collapse -> (LR, phase)."""
    if epoch < warmup_epochs:
        return lr_curves.warmup(epoch, kind=cfg.warmup, warmup_epochs=warmup_epochs,
                                start_lr=cfg.warmup_start_lr, peak_lr=peak_lr), "warmup"
    progress = (epoch - warmup_epochs) / (total_epochs - warmup_epochs)
    if cfg.decay == "poly":
        return lr_curves.poly(progress, power=cfg.power, peak_lr=peak_lr, end_lr=cfg.end_lr), "decay"
    if cfg.decay == "cosine":
        return lr_curves.cosine(progress, peak_lr=peak_lr, end_lr=cfg.end_lr), "decay"
    if cfg.decay == "multistep":
        return lr_curves.multistep(epoch, peak_lr=peak_lr, milestones=cfg.milestones,
                                   gamma=cfg.gamma), "decay"
    if cfg.decay == "constant":
        return peak_lr, "decay"
    if cfg.decay == "roller_coaster":
        w = warmup_epochs if cfg.roller_coaster_warmup == "run" else cfg.warmup_epochs
        return lr_curves.roller_coaster(epoch, total_epochs=total_epochs, formula_warmup=w,
                                        peak_lr=peak_lr, floor=cfg.roller_coaster_floor), "decay"
    if cfg.decay == "cyclic":
        lr, segment = lr_curves.codreanu_cyclic(
            epoch, peak_lr=peak_lr, warmup_end=warmup_epochs, total_epochs=total_epochs,
            linear_until=cfg.cyclic_linear_until, start=cfg.cyclic_start,
            start_ratio=cfg.cyclic_start_ratio, rewarm_epochs=cfg.cyclic_rewarm_epochs,
            rewarm_factor=cfg.cyclic_rewarm_factor, decay_epochs=cfg.cyclic_decay_epochs,
            decay_factor=cfg.cyclic_decay_factor, power=cfg.cyclic_power)
        # Codreanu VI: the main trajectory never collapses; its snapshots branch into
        # collapses (Table XI's "Nc", schedule.branch_from)
        return lr, "rewarm" if segment == "rewarm" else "decay"
    raise ValueError(f"schedule.decay = {cfg.decay!r}: unknown")


def lr_at(epoch: float, cfg: ScheduleConfig, *, base_lr: float, total_epochs: float,
          warmup_epochs: float | None = None) -> float:
    """LR of warmup + decay with peak ``base_lr`` (no scaling rule, no collapse)."""
    warm = cfg.warmup_epochs if warmup_epochs is None else warmup_epochs
    return main_lr(epoch, cfg, peak_lr=base_lr, warmup_epochs=warm, total_epochs=total_epochs)[0]


def weight_decay_at(epoch: float, *, base: float, milestones, values) -> float:
    """Multi-step weight decay (Codreanu V-C, Fig. 3): values[k] from milestones[k] on."""
    wd = base
    for m, v in zip(milestones, values):
        if epoch >= m:
            wd = v
    return wd


def point_at(epoch: float, plan: Plan) -> SchedulePoint:
    """LR, weight decay, augmentation mode and phase at a fractional epoch (no snapshot flag)."""
    cfg = plan.schedule
    lr, phase = main_lr(epoch, cfg, peak_lr=plan.peak_lr, warmup_epochs=plan.warmup_epochs,
                        total_epochs=plan.total_epochs)
    if plan.collapse_start is not None and epoch >= plan.collapse_start:
        # Codreanu V-B2: "starting from the value where it left off", power-2 poly to the end
        left_off, _ = main_lr(plan.collapse_start, cfg, peak_lr=plan.peak_lr,
                              warmup_epochs=plan.warmup_epochs, total_epochs=plan.total_epochs)
        lr = lr_curves.collapse(epoch, start_epoch=plan.collapse_start,
                                end_epoch=plan.end_epochs, start_lr=left_off,
                                power=cfg.collapse_power)
        phase = "collapse"
    collapsing = phase == "collapse"
    wd = weight_decay_at(epoch, base=plan.base_weight_decay, milestones=cfg.wd_milestones,
                         values=cfg.wd_values)
    if collapsing:
        wd *= cfg.collapse_wd_factor  # Codreanu V-B2: weight decay doubles, 5e-5 -> 1e-4
    return SchedulePoint(lr=lr, weight_decay=wd, collapse=collapsing, phase=phase)


def snapshot_epochs(plan: Plan) -> list[float]:
    """Epochs whose weights the schedule asks to keep: the end of each of Codreanu's cycles."""
    cfg = plan.schedule
    if cfg.decay != "cyclic" or cfg.branch_from:
        return []
    ends = lr_curves.cyclic_cycle_ends(
        start=cfg.cyclic_start, cycle_epochs=cfg.cyclic_rewarm_epochs + cfg.cyclic_decay_epochs,
        total_epochs=plan.total_epochs)
    return ([cfg.cyclic_start] if cfg.cyclic_snapshot_start else []) + ends


def snapshot_iterations(plan: Plan, iters_per_epoch: float) -> list[int]:
    """Completed-iteration counts at which the snapshots fall (nearest iteration, >= 1)."""
    return [max(1, round(e * iters_per_epoch)) for e in snapshot_epochs(plan)]


def plan_at(iteration: int, iters_per_epoch: float, plan: Plan | Config) -> SchedulePoint:
    """The schedule after ``iteration`` completed iterations: LR and weight decay of the next
    iteration, augmentation mode, and whether the current weights are a snapshot."""
    if isinstance(plan, Config):
        plan = resolve_plan(plan)
    point = point_at(iteration / iters_per_epoch, plan)
    return replace(point, snapshot=iteration in snapshot_iterations(plan, iters_per_epoch))


# ---------------------------------------------------------------------------- resolving

def resolve_plan(cfg: Config) -> Plan:
    """Resolve scaling, LEGW and collapse for this run; refuse combinations that cannot run."""
    s, total, batch = cfg.schedule, cfg.train.epochs, cfg.train.global_batch
    peak = scaled_lr(cfg.optim.base_lr, batch=batch, base_batch=s.base_batch, rule=s.lr_scaling)
    warm = legw_warmup_epochs(s.warmup_epochs, batch=batch, base_batch=s.base_batch) \
        if s.legw else s.warmup_epochs
    if warm >= total:
        limit = total * s.warmup_epochs / warm  # the option's value that gives warmup = total
        refuse("schedule.warmup_epochs", s.warmup_epochs,
               f"the warmup of {warm:g} epochs{' (LEGW: x B/B0)' if s.legw else ''} must be "
               f"shorter than train.epochs = {total:g}: set --schedule.warmup_epochs below "
               f"{limit:g} (or raise --train.epochs)")
    if s.branch_from:
        if s.branch_from > total:
            refuse("schedule.branch_from", s.branch_from,
                    f"must be within the main run (train.epochs = {total})")
        collapse_start, end = s.branch_from, s.branch_from + s.collapse_epochs
    else:
        collapse_epochs = s.collapse_epochs or s.collapse_fraction * total
        collapse_start, end = (total - collapse_epochs if collapse_epochs else None), total
    if collapse_start is not None and collapse_start < warm:
        refuse("schedule.collapse_epochs", s.collapse_epochs or s.collapse_fraction,
                f"the collapse would start at epoch {collapse_start:g}, inside the warmup "
                f"(ends at epoch {warm:g})")
    if s.decay == "roller_coaster" and s.roller_coaster_warmup == "baseline" \
            and s.warmup_epochs >= total:
        refuse("schedule.warmup_epochs", s.warmup_epochs, "w0 must be < train.epochs")
    plan = Plan(schedule=s, peak_lr=peak, warmup_epochs=warm, total_epochs=total,
                base_weight_decay=cfg.optim.weight_decay, collapse_start=collapse_start,
                end_epochs=end)
    if s.decay == "cyclic":
        _check_cyclic(plan)
    return plan


def _check_cyclic(plan: Plan) -> None:
    s, total = plan.schedule, plan.total_epochs
    if plan.warmup_epochs >= s.cyclic_linear_until:
        refuse("schedule.cyclic_linear_until", s.cyclic_linear_until,
                f"must be after the warmup (ends at epoch {plan.warmup_epochs:g})")
    if s.cyclic_start >= total:
        refuse("schedule.cyclic_start", s.cyclic_start, f"must be < train.epochs = {total}")
    try:
        snapshot_epochs(plan)
    except ValueError as e:
        refuse("schedule.cyclic_decay_epochs", s.cyclic_decay_epochs, str(e))
    left = lr_curves.poly((s.cyclic_linear_until - plan.warmup_epochs)
                          / (total - plan.warmup_epochs), power=1.0, peak_lr=1.0)
    if s.cyclic_start_ratio >= left:
        refuse("schedule.cyclic_start_ratio", s.cyclic_start_ratio,
                f"must be below the LR left at epoch {s.cyclic_linear_until:g} "
                f"({left:.3f} of the peak) for the power decay to decay")


class Schedule:
    """The run's schedule. ``at(epoch)`` for any fractional epoch (a pure function of it);
    with ``steps_per_epoch`` known it also flags the snapshot iterations."""

    def __init__(self, cfg: Config, steps_per_epoch: float | None = None):
        self.cfg = cfg
        self.plan = resolve_plan(cfg)
        self.steps_per_epoch = steps_per_epoch

    def at(self, epoch: float) -> SchedulePoint:
        point = point_at(epoch, self.plan)
        if self.steps_per_epoch:
            it = epoch * self.steps_per_epoch
            if abs(it - round(it)) < 1e-6 and round(it) in self.snapshot_steps():
                point = replace(point, snapshot=True)
        return point

    def collapsing(self, epoch: int):
        """Step in `epoch` -> whether the collapse phase (its augmentation) is in force at
        that step: a collapse that starts or ends inside the epoch switches the data path at
        that step, with the LR and the weight decay, not at the next epoch boundary."""
        spe = self._spe()
        # the trainer's formula for the step's LR, (global step) / spe: bit for bit the same
        return lambda step: self.at((epoch * spe + step) / spe).collapse

    def point(self, iteration: int) -> SchedulePoint:
        """``plan_at(iteration, steps_per_epoch, plan)``."""
        return plan_at(iteration, self._spe(), self.plan)

    def snapshot_epochs(self) -> list[float]:
        return snapshot_epochs(self.plan)

    def snapshot_steps(self) -> list[int]:
        """Completed-step counts after which the weights are a snapshot (the last may be the
        final step: save it after the step, not only when ``at`` flags it)."""
        return snapshot_iterations(self.plan, self._spe())

    def _spe(self) -> float:
        if not self.steps_per_epoch:
            raise ValueError("this Schedule was built without steps_per_epoch")
        return self.steps_per_epoch


def build_schedule(cfg: Config, steps_per_epoch: float | None = None) -> Schedule:
    """Raises ConfigError for a schedule that cannot run with this batch and epoch count."""
    return Schedule(cfg, steps_per_epoch)
