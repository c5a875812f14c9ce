"""The experiment set of tools/experiments: which runs test which claim, in what order.

    .venv/bin/python -m tools.experiments --plan [--quick]    # lists what this module plans

Pure planning: `plan(mode, results)` returns every run that can be planned given the finished
runs' results (a sweep's best value, chosen on the validation split, decides the runs that
follow it). Every image run trains on the `fit` split (50,000 images), evaluates on `val`
(10,000 held out of the training set) during training, and is evaluated once on `test` at the
end; tuned choices read val only. The regime is the papers' (docs/results.md, "Setup"):
batches up to 2048 = 4.1% of the fit split (the papers' largest: 32K-64K of 1.28 M = 2.5-5%),
at least 800 optimizer steps at the largest batch (verdicts.MIN_STEPS), the same
epochs at every batch. Order = priority: the SGD baseline at B0 first (every claim compares
with it), then the claims from cheapest to dearest (DATE, the network without BN, the collapse,
the cyclic run, the BN network at batch 2048, the LSTM), so that a set stopped part way (a
session ends; the set resumes where it stopped) answers as many claims as it can.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .budget import OVERHEAD_S, image_estimate, lm_estimate
from .sweep import sweep

RANKS = 4
B0 = 128                                 # the SGD baseline's batch (claims 1-3)
GOYAL_WARMUP = 5.0 / 90.0                # Goyal et al.: 5 of 90 epochs, from lr0 to k lr0
LSTM = "jobs/experiments/ptb_lstm.toml"
LM_B0, LM_LR0 = 20, 2.0                  # ptb_lstm.toml: DATE 4.1.2's baseline


@dataclass(frozen=True)
class ImageModel:
    name: str            # model.name
    config: str          # its base TOML: the SGD baseline at B0 (lr0, weight decay, splits)
    lr0: float           # the SGD baseline's LR at B0 (as in the TOML)
    wd: float            # the SGD baseline's weight decay (as in the TOML)
    gamma0: float        # LARS gamma rule gamma0 sqrt(B/B0), the centre of the sweep
    lars_warmup: float   # LARS warmup, fraction of the run (You et al.: AlexNet 8-13 of 100
                         # epochs, AlexNet-BN 2 of 100, ResNet-50 5 of 90)
    eval_every: float    # epochs between validation evaluations


LENET = ImageModel("lenet", "jobs/experiments/fmnist_lenet.toml", 0.05, 5e-4, 2.0, 0.10, 1.0)
RESNET = ImageModel("cifar_resnet20", "jobs/experiments/fmnist_resnet20.toml", 0.1, 5e-4, 2.0,
                    GOYAL_WARMUP, 2.0)


@dataclass(frozen=True)
class Mode:
    name: str
    epochs: float                 # claims 1-4 (LeNet), every batch
    batches: tuple[int, ...]      # LeNet (no BN), claims 1-3; the first is B0
    bn_epochs: float              # claims 1-3 on the BatchNorm network, every batch
    bn_batches: tuple[int, ...]   # the BN network's; the first is B0
    lars_sweep: tuple[float, ...]  # multiples of the gamma rule tried at the largest batch
    lars_all: bool                # LARS at every batch (else at the largest only: the verdict's)
    date_batches: tuple[int, ...]  # DATE's B0 (eta0 tuned there), then the batches it scales to
    date_sweep: tuple[float, ...]  # multiples of eta0's rule tried at DATE's B0
    seeds: int                    # seeds of claims 1-4 and 7 (seed 0 of every claim runs first)
    collapse_model: ImageModel
    collapse_epochs: float
    collapse_batch: int
    collapse_wd: float            # claim 5's standard weight decay: sum of LR x wd ~ the paper's
    collapse_seeds: int
    cyclic_epochs: float
    cyclic_batch: int
    cycles: int                   # claim 6's cycles = snapshots = collapse branches (paper: 5)
    branch_epochs: float          # each collapse branch of claim 6
    lm_epochs: float
    lm_hidden: int
    lm_fraction: float
    lm_batches: tuple[int, ...]   # the first is LM_B0
    stress: tuple[int, ...] = ()  # LeNet batches beyond the papers' regime (labelled, no verdict)
    bn_curve: tuple[int, ...] = ()  # --bn-curve: linear scaling on the BN network between its
    #                                 B0 and largest batch, seed 0, after the rest of the set
    cyclic_seeds: int = 1         # --cyclic-seeds: claim 6 whole for seeds 1.., after the curve
    lm_full_text: bool = False    # --lm-full-text: claim 7 on PTB's whole training text, last


# The pipeline in ~15 min: every claim, a few epochs, tens of steps (weak evidence by design).
QUICK = Mode("quick", epochs=2.0, batches=(128, 1024), bn_epochs=0.5, bn_batches=(128, 1024),
             lars_sweep=(1.0,), lars_all=False, date_batches=(128, 1024), date_sweep=(1.0,),
             seeds=1, collapse_model=LENET, collapse_epochs=2.0, collapse_batch=512,
             collapse_wd=5e-4, collapse_seeds=1, cyclic_epochs=6.0, cyclic_batch=1024, cycles=2,
             branch_epochs=0.5, lm_epochs=3.0, lm_hidden=64, lm_fraction=0.2, lm_batches=(20, 160))
# The papers' regime in ~6 h (--plan). A 34-epoch ResNet-20 run costs ~40 min, so the BN
# network gets B0 and the largest batch only; seeds were cut first (one each), then LARS at
# the smaller LeNet batches and half of PTB's training tokens.
FULL = Mode("full", epochs=34.0, batches=(128, 512, 1024, 2048), bn_epochs=34.0,
            bn_batches=(128, 2048), lars_sweep=(0.5, 1.0, 2.0), lars_all=False,
            date_batches=(256, 2048), date_sweep=(0.5, 1.0, 2.0), seeds=1,
            collapse_model=RESNET, collapse_epochs=14.0, collapse_batch=512, collapse_wd=5.5e-3,
            collapse_seeds=1, cyclic_epochs=30.0, cyclic_batch=1024, cycles=5, branch_epochs=1.5,
            lm_epochs=13.0, lm_hidden=200, lm_fraction=0.5, lm_batches=(20, 640))


# --bn-curve: the batches the 6-hour set leaves out on the BN network (the regime is
# B in {128, 512, 1024, 2048}; a ResNet-20 run costs ~40 min), for linear scaling only: the
# claim that needs them ("holds up to a batch") is claim 2's.
BN_CURVE = {"quick": (512,), "full": (512, 1024)}


def select_mode(quick: bool, seeds: int | None = None, bn_curve: bool = False,
                collapse_seeds: int | None = None, cyclic_seeds: int | None = None,
                lm_full_text: bool = False) -> Mode:
    """The named set, with `seeds` seeds of claims 1-4 and 7 instead of its own, with bn_curve
    the BN network's linear scaling at the batches between, with `collapse_seeds` and
    `cyclic_seeds` seeds of claims 5 and 6, and with lm_full_text claim 7 again on the whole
    training text. The other seeds, the curve and the whole text come after the one-seed set
    in the plan, so its finished runs are kept."""
    mode = replace(QUICK if quick else FULL, lm_full_text=lm_full_text)
    if bn_curve:
        mode = replace(mode, bn_curve=BN_CURVE[mode.name])
    for flag, n in (("--seeds", seeds), ("--collapse-seeds", collapse_seeds),
                    ("--cyclic-seeds", cyclic_seeds)):
        if n is not None and n < 1:
            raise ValueError(f"{flag} must be >= 1, got {n}")
    return replace(mode, seeds=seeds or mode.seeds,
                   collapse_seeds=collapse_seeds or mode.collapse_seeds,
                   cyclic_seeds=cyclic_seeds or mode.cyclic_seeds)


def flags(mode: Mode) -> str:
    """The command-line flags that select `mode` (the report names its command)."""
    base = QUICK if mode.name == "quick" else FULL
    return (" --quick" if mode.name == "quick" else "") + \
        (f" --seeds {mode.seeds}" if mode.seeds != base.seeds else "") + \
        (" --bn-curve" if mode.bn_curve else "") + \
        (f" --collapse-seeds {mode.collapse_seeds}"
         if mode.collapse_seeds != base.collapse_seeds else "") + \
        (f" --cyclic-seeds {mode.cyclic_seeds}"
         if mode.cyclic_seeds != base.cyclic_seeds else "") + \
        (" --lm-full-text" if mode.lm_full_text else "")


def bn_regime(mode: Mode) -> tuple[int, ...]:
    """The BN network's batches, B0 first: the set's and, with --bn-curve, those between."""
    return tuple(sorted({*mode.bn_batches, *mode.bn_curve}))


@dataclass(frozen=True)
class Run:
    name: str
    experiment: str          # bn / nobn (claims 1-3), date (4), collapse (5), cyclic (6),
    #                          lstm (7) and lstm-full (7 on the whole training text)
    method: str              # baseline, goyal, lars, date, wd_full, ... (the report's rows)
    batch: int
    seed: int
    config: str
    overrides: tuple[str, ...]
    kind: str = "image"      # image (train, then test evaluation) / lm / collapsed
    tune: str = ""           # runs sharing a tune key are a sweep; val top-1 picks the best
    value: float = 0.0       # the swept value (LARS gamma, DATE eta0)
    tool_args: tuple[str, ...] = ()   # hpcsgd.collapsed_ensemble's own arguments
    estimate_s: float = field(default=0.0, compare=False)

    def args(self) -> list[str]:
        """Everything that makes the run what it is (a finished run with other args reruns)."""
        return [self.config, *self.overrides, *self.tool_args]


# ---------------------------------------------------------------------------- recipes

def lars_gamma(model: ImageModel, batch: int) -> float:
    """LARS's global LR by rule (You et al. Table 5: 5 -> 10 -> 14 for 512 -> 4K -> 8K)."""
    return model.gamma0 * math.sqrt(batch / B0)


def scaling_overrides(model: ImageModel, method: str, batch: int, epochs: float,
                      gamma: float = 0.0) -> list[str]:
    common = [f"--train.epochs={epochs:g}", f"--train.global_batch={batch}",
              f"--train.eval_every_epochs={model.eval_every:g}"]
    if method == "baseline":  # the base TOML's recipe at B0: lr0, poly 1, no warmup
        return common
    if method == "goyal":  # Goyal et al.: k lr0, gradual warmup from lr0 over 5/90 of the run
        return common + ["--schedule.lr_scaling=linear", f"--schedule.base_batch={B0}",
                         f"--schedule.warmup_epochs={epochs * GOYAL_WARMUP:g}",
                         f"--schedule.warmup_start_lr={model.lr0:g}"]
    if method == "lars":  # You et al. 3.2.3: LARS eta 0.001, gamma tuned, warmup, poly power 2
        return common + ["--optim.name=lars", f"--optim.base_lr={gamma:g}",
                         "--optim.lars_eta=0.001", "--schedule.power=2.0",
                         f"--schedule.warmup_epochs={epochs * model.lars_warmup:g}"]
    raise ValueError(f"unknown scaling method {method!r}")


def _image_run(experiment, method, model, batch, seed, over, epochs, tag="", **kw) -> Run:
    prefix = experiment if method == experiment else f"{experiment}-{method}"
    return Run(f"{prefix}-b{batch}{tag}-s{seed}", experiment, method, batch, seed,
               model.config, tuple(over + [f"--train.seed={seed}"]),
               estimate_s=image_estimate(model, epochs, batch), **kw)


def scaling_runs(model: ImageModel, experiment: str, batches, epochs: float, mode: Mode,
                 results: dict, seeds, stress=()) -> list[Run]:
    """Claims 1-3 on one model: the SGD baseline at B0; Goyal's linear scaling + warmup and
    LARS at the larger batches, largest first, then the `stress` batches beyond the regime.
    LARS's gamma is swept at the largest batch (seed 0); the best multiple of the rule is
    used at the other seeds and, with mode.lars_all, at the other batches."""
    big, rest = max(batches), sorted(batches[1:], reverse=True)[1:] + list(stress)

    def lars(batch, seed, factor, tune=""):
        g = lars_gamma(model, batch) * factor
        return _image_run(experiment, "lars", model, batch, seed,
                          scaling_overrides(model, "lars", batch, epochs, g), epochs,
                          f"-g{g:g}", tune=tune, value=factor)

    key = f"{experiment}-lars-b{big}"
    swept, factor = sweep(lambda f: lars(big, 0, f, key if len(mode.lars_sweep) > 1 else ""),
                          mode.lars_sweep, results)
    runs = []
    for seed in seeds:
        runs.append(_image_run(experiment, "baseline", model, batches[0], seed,
                               scaling_overrides(model, "baseline", batches[0], epochs), epochs))
        for batch in [big] + rest:
            runs.append(_image_run(experiment, "goyal", model, batch, seed,
                                   scaling_overrides(model, "goyal", batch, epochs), epochs))
            if batch == big and seed == 0:
                runs += swept
            elif factor is not None and (batch == big or mode.lars_all or batch in stress):
                runs.append(lars(batch, seed, factor))
    return runs


def date_overrides(mode: Mode, batch: int, eta0: float) -> list[str]:
    """DATE Algorithm 1 from its baseline (B0, eta0, w0): sqrt LR scaling, LEGW (warmup
    w0 B/B0), the roller-coaster decay, the layer ratio ||w||/||g|| clipped to [0.1, 10]."""
    w0 = mode.epochs * 2.0 / 30.0  # DATE 3.6's LeNet example: w0 = 2 of 30 epochs
    return [f"--train.epochs={mode.epochs:g}", f"--train.global_batch={batch}",
            "--optim.date=true", "--optim.date_lower=0.1", "--optim.date_upper=10.0",
            f"--optim.base_lr={eta0:g}", "--schedule.lr_scaling=sqrt",
            f"--schedule.base_batch={mode.date_batches[0]}", "--schedule.legw=true",
            f"--schedule.warmup_epochs={w0:g}", "--schedule.decay=roller_coaster"]


def date_runs(mode: Mode, results: dict, seeds, stress=()) -> list[Run]:
    """Claim 4 on DATE's own protocol (its LeNet/MNIST claim: 1K -> 8K): eta0 tuned once at B0
    on the validation split, then the batch scaled up with everything else untouched."""
    b0 = mode.date_batches[0]
    rule = LENET.lr0 * b0 / B0 / 10.0  # a layer at the upper bound 10 moves at SGD's LR

    def run(batch, seed, factor, tune=""):
        eta0 = rule * factor
        return _image_run("date", "date", LENET, batch, seed, date_overrides(mode, batch, eta0),
                          mode.epochs, f"-e{eta0:g}", tune=tune, value=factor)

    swept, factor = sweep(lambda f: run(b0, 0, f, "date-eta0" if len(mode.date_sweep) > 1 else ""),
                          mode.date_sweep, results)
    later = sorted(mode.date_batches[1:], reverse=True) + list(stress)
    runs = []
    for seed in seeds:
        runs += swept if seed == 0 else ([run(b0, seed, factor)] if factor is not None else [])
        if factor is not None:
            runs += [run(b, seed, factor) for b in later]
    return runs


def collapse_runs(mode: Mode, seeds) -> list[Run]:
    """Codreanu Table VIII with paired seeds (same init and data order in every arm): the
    standard weight decay; half of it; half + a final collapse over the last 7% (power-2 LR
    from where it was, weight decay x2 back to the standard, flip + shift kept: Fashion-MNIST
    has no scale/aspect augmentation to turn off). BatchNorm over
    32 images per rank as in the paper (gradient accumulation); linear LR scaling, warmup."""
    m, e, batch, wd = mode.collapse_model, mode.collapse_epochs, mode.collapse_batch, mode.collapse_wd
    accumulation = max(1, batch // (RANKS * 32))
    common = [f"--train.epochs={e:g}", f"--train.global_batch={batch}",
              f"--train.accumulation={accumulation}", f"--train.eval_every_epochs={m.eval_every:g}",
              "--schedule.lr_scaling=linear", f"--schedule.base_batch={B0}",
              f"--schedule.warmup_epochs={e * GOYAL_WARMUP:g}", "--schedule.warmup_start_lr=0.0"]
    arms = {"wd_full": [f"--optim.weight_decay={wd:g}"],
            "wd_half": [f"--optim.weight_decay={wd / 2:g}"],
            "wd_half_collapse": [f"--optim.weight_decay={wd / 2:g}",
                                 "--schedule.collapse_fraction=0.07",
                                 "--schedule.collapse_wd_factor=2.0"]}
    return [Run(f"collapse-{arm}-s{seed}", "collapse", arm, batch, seed, m.config,
                tuple(common + extra + [f"--train.seed={seed}"]),
                estimate_s=image_estimate(m, e, batch, accumulation))
            for seed in seeds for arm, extra in arms.items()]


def cyclic_runs(mode: Mode, seeds=(0,)) -> list[Run]:
    """Codreanu VI as one `python -m hpcsgd.collapsed_ensemble` command: the cyclic run (his
    120 epochs compressed, same proportions: linear decay until 30, power decay until 45,
    then cycles of 3 epochs' re-warm + 12 epochs' decay; half the weight decay) saves a
    snapshot at each cycle end; a collapse branch trains from each; the ensemble is of the
    branches (Table XI 2c-6c). LeNet keeps lr0 at this batch (it took no scaled LR at 1024
    in the previous set: NaN loss). Nothing is tuned, so it evaluates on test. A seed
    repeats the whole procedure (its initial weights and data order)."""
    e, batch = mode.cyclic_epochs, mode.cyclic_batch
    s = e / (45.0 + 15.0 * mode.cycles)  # 120 epochs for 5 cycles
    over = [f"--train.epochs={e:g}", f"--train.global_batch={batch}",
            f"--optim.weight_decay={LENET.wd / 2:g}", "--data.eval_split=test",
            f"--schedule.warmup_epochs={e * GOYAL_WARMUP:g}", "--schedule.decay=cyclic",
            f"--schedule.cyclic_linear_until={30 * s:g}", f"--schedule.cyclic_start={45 * s:g}",
            f"--schedule.cyclic_rewarm_epochs={3 * s:g}", f"--schedule.cyclic_decay_epochs={12 * s:g}",
            "--schedule.cyclic_snapshot_start=false", f"--train.eval_every_epochs={15 * s:g}"]
    branches = mode.cycles
    total = e + branches * mode.branch_epochs
    return [Run(f"cyclic-s{seed}", "cyclic", "cyclic", batch, seed, LENET.config,
                tuple(over + [f"--train.seed={seed}"]), kind="collapsed",
                tool_args=("--collapse-epochs", f"{mode.branch_epochs:g}"),
                estimate_s=image_estimate(LENET, total, batch) + branches * OVERHEAD_S)
            for seed in seeds]


def lm_w0(mode: Mode) -> float:
    """The LSTM baseline's warmup in epochs, w0: LEGW scales it by B/B0, to half the run at
    the largest batch (DATE 4.1.2 gives no warmup length)."""
    return 0.5 * mode.lm_epochs * LM_B0 / max(mode.lm_batches)


def lstm_runs(mode: Mode, seeds, full_text: bool = False) -> list[Run]:
    """DATE 4.1.2's PTB-small claim: the baseline (momentum 0.9, LR constant for 7 of 13
    epochs, then x0.4 per epoch: ptb_lstm.toml) at 20 streams, and DATE at 32 x 20 with the
    baseline's (B0, eta0, w0), untouched. Nothing is tuned, so the trainer evaluates test.
    A seed changes the initial weights only (the streams are PTB's text in order). On the
    set's share of the training text (mode.lm_fraction), or with full_text on all of it, as
    the papers (--lm-full-text: experiment "lstm-full", names "...-full-s<seed>")."""
    if full_text:
        mode = replace(mode, lm_fraction=1.0)
    big = max(mode.lm_batches)
    e, w0 = mode.lm_epochs, lm_w0(mode)
    milestones = [float(m) for m in range(round(e * 7 / 13), math.ceil(e))]  # x0.4 each
    common = [f"--train.epochs={e:g}", f"--lm.hidden={mode.lm_hidden}",
              f"--lm.train_fraction={mode.lm_fraction:g}", f"--schedule.warmup_epochs={w0:g}",
              f"--schedule.milestones={milestones}".replace(" ", "")]
    recipes = {"baseline": (LM_B0, []),
               "date": (big, ["--optim.date=true", "--optim.date_lower=0.1",
                              "--optim.date_upper=10.0", f"--optim.base_lr={LM_LR0 / 10:g}",
                              "--schedule.lr_scaling=sqrt", f"--schedule.base_batch={LM_B0}",
                              "--schedule.legw=true", "--schedule.decay=roller_coaster"])}
    text = "-full" if full_text else ""
    return [Run(f"lstm-{m}-b{b}{text}-s{seed}", "lstm" + text, m, b, seed, LSTM,
                tuple(common + extra + [f"--train.global_batch={b}", f"--train.seed={seed}"]),
                kind="lm", estimate_s=lm_estimate(mode, b))
            for seed in seeds for m, (b, extra) in recipes.items()]


def plan(mode: Mode, results: dict) -> list[Run]:
    """Every run that can be planned given the finished `results`, in priority order: seed 0
    of every claim (the BN baseline first, then the claims cheapest first), then the other
    seeds of claims 1-4 and 7, seed by seed, each the claims cheapest first; then the stress
    batches, the --bn-curve runs, claim 6's and claim 5's other seeds, and claim 7 on the
    whole training text."""
    def bn(seeds):
        return scaling_runs(RESNET, "bn", mode.bn_batches, mode.bn_epochs, mode, results, seeds)

    def nobn(seeds):
        return scaling_runs(LENET, "nobn", mode.batches, mode.epochs, mode, results, seeds)
    first = bn([0])
    more = [run for seed in range(1, mode.seeds) for run in (
        date_runs(mode, results, [seed]) + nobn([seed]) + lstm_runs(mode, [seed]) + bn([seed]))]
    return (first[:1] + date_runs(mode, results, [0]) + nobn([0]) + collapse_runs(mode, [0])
            + cyclic_runs(mode) + first[1:] + lstm_runs(mode, [0]) + more
            + [r for r in scaling_runs(LENET, "nobn", mode.batches, mode.epochs, mode, results,
                                       [0], mode.stress) if r.batch in mode.stress]
            + [r for r in date_runs(mode, results, [0], mode.stress) if r.batch in mode.stress]
            + bn_curve_runs(mode) + cyclic_runs(mode, range(1, mode.cyclic_seeds))
            + collapse_runs(mode, range(1, mode.collapse_seeds))
            + (lstm_runs(mode, range(mode.seeds), full_text=True) if mode.lm_full_text else []))


def bn_curve_runs(mode: Mode) -> list[Run]:
    """Linear scaling + warmup on the BN network at the --bn-curve batches, largest first,
    seed 0: the same command as its run at the largest batch but for the batch."""
    return [_image_run("bn", "goyal", RESNET, b, 0,
                       scaling_overrides(RESNET, "goyal", b, mode.bn_epochs), mode.bn_epochs)
            for b in sorted(set(mode.bn_curve) - set(mode.bn_batches), reverse=True)]
