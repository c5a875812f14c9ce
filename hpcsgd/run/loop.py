"""The training loop and the training step.

``train_step`` is the algorithm of one synchronous data-parallel SGD step:

    data -> forward -> backward (the gradient allreduce overlaps it; micro-batches before the
    last only accumulate) -> synchronize (gradients averaged) -> one control collective (non-finite values, stop
    signals) -> schedule -> optimizer step -> zero the gradients

``run_loop`` repeats it and hands each finished step to the objects beside it, each owning
one concern: the Meter (timing and the train/epoch records, hpcsgd/run/meter.py), the Evaluator
(hpcsgd/run/evaluate.py), the Checkpointer (periodic checkpoints, snapshots, the stop
checkpoint: hpcsgd/run/saving.py) and the StopRequest (SIGUSR1/SIGTERM, hpcsgd/run/stop.py).
"""
from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass, field
from itertools import chain, islice

from hpcsgd.comm.reducer import check_consistency
from hpcsgd.cpu.compute import autocast, to_layout
from hpcsgd.run.control import agree_step
from hpcsgd.exits import EXIT_NONFINITE
from hpcsgd.run.nonfinite import NonFinite
from hpcsgd.optim.build import apply_schedule_
from hpcsgd.exits import EXIT_REQUEUE


@dataclass
class Progress:
    """Where the run is; saved in checkpoints. The schedule and the sampler positions are
    pure functions of `step`."""
    step: int = 0
    images_done: int = 0
    """Samples trained on over all ranks: images, or the language model's target tokens."""
    train_time: float = 0.0
    """Seconds of training steps (evaluation and checkpointing excluded)."""
    wall_time: float = 0.0
    """Seconds since the run first started, summed over its resumed segments."""
    time_to_target: float | None = None
    last_eval: dict = field(default_factory=dict)
    nonfinite_skips: int = 0
    """Steps whose update was skipped for a NaN/Inf loss or gradient (train.nonfinite)."""


@dataclass
class Parts:
    """What a step touches: built once per run (hpcsgd/train.py: build_run)."""
    model: object
    forward: object
    """The model as called (maybe a compiled wrapper of it)."""
    optimizer: object
    reducer: object
    schedule: object
    guard: object
    task: object
    """What differs between tasks: the loss (hpcsgd/run/trainer.py)."""
    comm: object
    watch: object
    """Waits for the loop's collectives and ends a stalled job (hpcsgd/run/control.py)."""
    stop: object
    """The run's StopRequest (hpcsgd/run/stop.py): its signal enters the control collective."""
    compute: object
    """The [compute] config section (layout, autocast)."""
    accumulation: int
    steps_per_epoch: int
    world_size: int


@dataclass
class StepResult:
    action: str
    """"update", "skip" or "stop" (hpcsgd/run/nonfinite.py)."""
    bad: NonFinite | None
    losses: list[float]
    """Each micro-batch's loss on this rank."""
    samples: int
    """Samples this rank trained on (images or target tokens); every rank counts the same."""
    signum: int
    """A stop signal some rank received (agreed by all): stop after this step."""


def train_step(parts: Parts, step: int, micro_batches, timer) -> StepResult:
    """Optimizer step number `step` + 1 from its micro-batches ((inputs, targets) pairs)."""
    losses, samples = [], 0
    last = parts.accumulation - 1
    for micro, (inputs, targets) in enumerate(micro_batches):
        inputs = to_layout(inputs, parts.compute)
        timer.mark("data")
        if micro == 0:
            parts.guard.before_step()  # charged to forward, not to the data wait
        with autocast(parts.compute):
            loss = parts.task.loss(parts.forward, inputs, targets)
        timer.mark("forward")
        # the bucket allreduces start during the last micro-batch's backward pass
        with contextlib.nullcontext() if micro == last else parts.reducer.no_sync():
            (loss / parts.accumulation).backward()
        losses.append(loss.item())
        samples += targets.numel()
        timer.mark("backward")
    parts.reducer.synchronize()  # sync point: gradients averaged over all ranks
    timer.mark("comm")
    loss_finite, gradients_finite = parts.guard.local_flags(losses)
    # the step's one control collective: non-finite flags and stop signals, all ranks agree
    agreed = agree_step(parts.comm, loss_finite=loss_finite, gradients_finite=gradients_finite,
                        signum=parts.stop.signum, watch=parts.watch, step=step + 1)
    action, bad = parts.guard.decide(step + 1, agreed)
    if action == "update":
        apply_schedule_(parts.optimizer, parts.schedule.at(step / parts.steps_per_epoch))
        parts.optimizer.step()
    parts.reducer.zero_grad()  # gradients stay views of the zeroed buckets (no copies)
    timer.mark("update")
    return StepResult(action, bad, losses, samples, agreed.signum)


def steps_of(micro_batches, accumulation: int):
    """(step, micro, images, labels) items -> per step, (step, its (images, labels) pairs),
    drawn lazily (the loader prefetches; the step consumes each group before the next)."""
    items = iter(micro_batches)
    for step, _, images, labels in items:
        rest = ((x, y) for _, _, x, y in islice(items, accumulation - 1))
        yield step, chain([(images, labels)], rest)


def run_loop(parts: Parts, progress: Progress, *, batches, total_steps: int, meter, evaluator,
             checkpointer, stop, world, log, consistency_every: int = 0) -> dict | None:
    """Train until `total_steps`: None when done, or the stopped run's summary.
    batches(epoch, start step, collapse) yields the (step, micro, inputs, targets) items."""
    spe = parts.steps_per_epoch
    while progress.step < total_steps:
        epoch, start = divmod(progress.step, spe)
        collapse = parts.schedule.collapsing(epoch)  # Codreanu V-B2, from the step it starts at
        for _, micro_batches in steps_of(batches(epoch, start, collapse), parts.accumulation):
            result = train_step(parts, progress.step, micro_batches, meter.timer)
            meter.count(result)
            if result.bad is not None:
                progress.nonfinite_skips = parts.guard.skips
                log.write("nonfinite", step=result.bad.step, loss_ranks=list(result.bad.loss_ranks),
                          gradients=result.bad.gradients, action=result.action)
                log.print(parts.guard.message(result.action, result.bad))
                if result.action == "stop":
                    return stopped(log, stop, parts.reducer, progress.step, EXIT_NONFINITE,
                                   reason="nonfinite")
            progress.step += 1
            progress.images_done += result.samples * parts.world_size
            step = progress.step
            if consistency_every and step % consistency_every == 0:
                check_consistency(parts.model, world, step)  # cheap checksum: replicas identical
            meter.log_point(step, parts.optimizer)
            evaluator.after_step(step)
            checkpointer.after_step(step)
            signum = result.signum  # agreed in the step's control collective
            if signum and step < total_steps:
                checkpointer.save_periodic(step)
                log.print(f"stopped by {signal.Signals(signum).name} at step {step}: "
                          f"checkpoint written, exit {EXIT_REQUEUE} (requeue)")
                return stopped(log, stop, parts.reducer, step, EXIT_REQUEUE,
                               signal=signal.Signals(signum).name)
            if step == total_steps:
                break
    stop.restore()
    return None


def stopped(log, stop, reducer, step: int, exit_code: int, **why) -> dict:
    """End the run early on every rank: the log's "stopped" record, signal handlers back,
    the communication thread and watchdog stopped (collective)."""
    log.write("stopped", step=step, **why)
    log.close()
    stop.restore()
    reducer.close()
    return {"stopped": True, "step": step, "exit_code": exit_code}
