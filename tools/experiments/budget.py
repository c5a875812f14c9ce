"""What a planned run costs and does, from its command alone: --plan's time model, an image
run's optimizer steps, and the sum over its steps of LR x weight decay (claim 5's measure of
how far weight decay can act within a run)."""
from __future__ import annotations

import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIT_IMAGES = 50000                       # tools/fashion_mnist_to_lmdb.py: fit / val / test
PTB_TOKENS = 929589                      # PTB's training text, words and sentence ends

# --plan's time model (4 ranks on the idle 2-core machine; measured, rough): images/s at a
# large local batch, seconds per optimizer step on top, seconds per 10,000-image evaluation
SPEED = {"lenet": 6000.0, "cifar_resnet20": 800.0}
STEP_S = {"lenet": 0.004, "cifar_resnet20": 0.02}
EVAL_S = {"lenet": 1.0, "cifar_resnet20": 4.0}
OVERHEAD_S = 25.0     # mpiexec start, imports, final checkpoint, the test evaluation
LM_TOKEN_S, LM_STEP_S = 1 / 6000.0, 0.07   # LSTM hidden 200 (~3x faster at hidden 64)


def image_estimate(model, epochs: float, batch: int, accumulation: int = 1) -> float:
    """Seconds for an image run of `model` (a plan.ImageModel) on an idle machine."""
    steps = round(epochs * (FIT_IMAGES // batch))
    return (steps * batch / SPEED[model.name] + steps * accumulation * STEP_S[model.name]
            + math.ceil(epochs / model.eval_every) * EVAL_S[model.name] + OVERHEAD_S)


def lm_estimate(mode, batch: int) -> float:
    """Seconds for an LSTM run of `mode`'s (a plan.Mode) at `batch` streams, idle machine."""
    tokens = PTB_TOKENS * mode.lm_fraction * mode.lm_epochs
    speedup = 200.0 / mode.lm_hidden if mode.lm_hidden < 200 else 1.0
    evals = mode.lm_epochs * 8.0 / speedup
    return (tokens * LM_TOKEN_S + tokens / (batch * 20) * LM_STEP_S) / speedup + evals + OVERHEAD_S


def steps_of(run) -> int:
    """Optimizer steps of an image run (the trainer's rounding; fit split)."""
    epochs = float(next(o for o in run.overrides if o.startswith("--train.epochs=")).split("=")[1])
    return round(epochs * (FIT_IMAGES // run.batch))


def lr_wd_sum(run) -> float:
    """Sum over the run's steps of LR x weight decay: how far weight decay can act within the
    run (Codreanu Table VIII at 4096, assuming 90 epochs at LR 1.6 = 0.1 x 4096/256 decaying
    linearly, which the table does not state, and 1e-4: ~2.2)."""
    from hpcsgd.config import load_config  # local: torch; only --plan and the report need it
    from hpcsgd.schedule.plan import build_schedule
    cfg = load_config(ROOT / run.config, list(run.overrides))
    spe = FIT_IMAGES // cfg.train.global_batch
    schedule = build_schedule(cfg, steps_per_epoch=spe)
    points = (schedule.at(s / spe) for s in range(round(cfg.train.epochs * spe)))
    return sum(p.lr * p.weight_decay for p in points)
