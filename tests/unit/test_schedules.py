"""Schedules against the papers' own numbers, step by step (no MPI, no model)."""
import math

import pytest

from hpcsgd.config import Config, ConfigError, ScheduleConfig, load_config
from hpcsgd.schedule.plan import (build_schedule, lr_at, plan_at, point_at, resolve_plan,
                              snapshot_iterations)


def _cfg(*overrides):
    return load_config(None, list(overrides))


def test_goyal_warmup_then_multistep():
    # Goyal et al.: batch 8192, warmup 0.1 -> 3.2 over 5 epochs, x0.1 at 30, 60, 80
    cfg = ScheduleConfig(warmup_epochs=5, warmup_start_lr=0.1, decay="multistep",
                         milestones=[30, 60, 80], gamma=0.1)
    lr = lambda e: lr_at(e, cfg, base_lr=3.2, total_epochs=90)  # noqa: E731
    assert lr(0) == pytest.approx(0.1)      # epoch 0: start of warmup
    assert lr(2.5) == pytest.approx(1.65)   # halfway: 0.1 + 3.1 / 2
    assert lr(5) == pytest.approx(3.2)      # end of warmup: peak
    assert lr(29.99) == pytest.approx(3.2)
    assert lr(30) == pytest.approx(0.32)
    assert lr(60) == pytest.approx(0.032)
    assert lr(85) == pytest.approx(0.0032)


def test_goyal_8192_from_the_256_baseline_per_iteration():
    # Goyal et al.: baseline B0 = 256, lr0 = 0.1; linear rule -> k = 32, peak 3.2;
    # gradual warmup from lr0 over 5 epochs, then x0.1 at 30, 60, 80. ImageNet-1K at batch
    # 8192 is 1281167 / 8192 = 156.4 iterations per epoch.
    cfg = _cfg("--optim.base_lr=0.1", "--train.global_batch=8192", "--train.epochs=90",
               "--schedule.lr_scaling=linear", "--schedule.base_batch=256",
               "--schedule.warmup_epochs=5", "--schedule.warmup_start_lr=0.1",
               "--schedule.decay=multistep", "--schedule.milestones=[30, 60, 80]")
    plan = resolve_plan(cfg)
    assert plan.peak_lr == pytest.approx(3.2)                       # 0.1 x 8192 / 256
    ipe = 1281167 / 8192
    lr = lambda it: plan_at(it, ipe, plan).lr  # noqa: E731
    assert lr(0) == pytest.approx(0.1)                              # iteration 0: lr0
    assert lr(1) == pytest.approx(0.1 + 3.1 / (5 * ipe))            # +0.00396 per iteration
    assert lr(2) - lr(1) == pytest.approx(lr(1) - lr(0))            # per iteration, not per epoch
    assert lr(round(2.5 * ipe)) == pytest.approx(1.65, abs=0.01)    # halfway through warmup
    assert lr(math.ceil(5 * ipe)) == pytest.approx(3.2)             # first iteration at the peak
    assert lr(math.ceil(30 * ipe) - 1) == pytest.approx(3.2)        # last iteration before 30
    assert lr(math.ceil(30 * ipe)) == pytest.approx(0.32)           # x0.1 at epoch 30
    assert lr(math.ceil(60 * ipe)) == pytest.approx(0.032)          # x0.1 at epoch 60
    assert lr(math.ceil(80 * ipe)) == pytest.approx(0.0032)         # x0.1 at epoch 80
    assert plan_at(5, ipe, plan).weight_decay == Config().optim.weight_decay


def test_codreanu_linear_decay_reaches_zero_at_the_end():
    cfg = ScheduleConfig(warmup_epochs=5, warmup_start_lr=0.0, decay="poly", power=1)
    lr = lambda e: lr_at(e, cfg, base_lr=8.0, total_epochs=45)  # noqa: E731
    assert lr(5) == pytest.approx(8.0)      # peak after warmup
    assert lr(25) == pytest.approx(4.0)     # halfway through decay
    assert lr(45) == pytest.approx(0.0)


def test_you_lars_poly_power_2():
    # You et al. Table 7: batch 8192, LARS, gamma 6.4, poly power 2, 5 warmup epochs, 90 epochs
    cfg = ScheduleConfig(warmup_epochs=5, decay="poly", power=2)
    lr = lambda e: lr_at(e, cfg, base_lr=6.4, total_epochs=90)  # noqa: E731
    assert lr(2.5) == pytest.approx(3.2)    # linear warmup from 0
    assert lr(5) == pytest.approx(6.4)
    assert lr(47.5) == pytest.approx(1.6)   # halfway through the decay: 6.4 x (1/2)^2
    assert lr(90) == 0.0


def test_cosine_and_constant():
    cos = ScheduleConfig(decay="cosine")
    assert lr_at(5, cos, base_lr=1.0, total_epochs=10) == pytest.approx(0.5)
    assert lr_at(3, ScheduleConfig(decay="constant"), base_lr=0.7, total_epochs=10) == 0.7


def test_constant_and_quadratic_warmup():
    const = ScheduleConfig(warmup="constant", warmup_epochs=2, warmup_start_lr=0.01,
                           decay="constant")
    assert lr_at(0.0, const, base_lr=1.0, total_epochs=10) == 0.01    # You et al. 2.3
    assert lr_at(1.99, const, base_lr=1.0, total_epochs=10) == 0.01
    assert lr_at(2.0, const, base_lr=1.0, total_epochs=10) == 1.0     # then the peak
    quad = ScheduleConfig(warmup="quadratic", warmup_epochs=4, decay="constant")
    assert lr_at(1, quad, base_lr=1.0, total_epochs=10) == pytest.approx(1 / 16)  # (E/w)^2
    assert lr_at(2, quad, base_lr=1.0, total_epochs=10) == pytest.approx(1 / 4)
    assert lr_at(4, quad, base_lr=1.0, total_epochs=10) == 1.0


# ------------------------------------------------------------------------------ DATE

def test_date_lenet_baseline_multistep():
    # DATE 3.6 (Fig. 10.1): B0 = 1024, eta0 = 1.25e-3, w0 = 2, 30 epochs, x0.1 at 10, 20, 27
    cfg = ScheduleConfig(warmup_epochs=2, decay="multistep", milestones=[10, 20, 27])
    lr = lambda e: lr_at(e, cfg, base_lr=1.25e-3, total_epochs=30)  # noqa: E731
    assert lr(1) == pytest.approx(0.625e-3)     # epochs [0, 2]: 0 -> 1.25e-3 linearly
    assert lr(9.99) == pytest.approx(1.25e-3)   # (2, 10]
    assert lr(10.01) == pytest.approx(1.25e-4)  # (10, 20]
    assert lr(20.01) == pytest.approx(1.25e-5)  # (20, 27]
    assert lr(27.01) == pytest.approx(1.25e-6)  # (27, 30]
    # "the 8K batch size uses a peak learning rate of 0.01" (linear rule, k = 8)
    big = _cfg("--optim.base_lr=1.25e-3", "--train.global_batch=8192", "--train.epochs=30",
               "--schedule.lr_scaling=linear", "--schedule.base_batch=1024")
    assert resolve_plan(big).peak_lr == pytest.approx(0.01)


def _date_lenet_8k(reading):
    return _cfg("--optim.base_lr=1.25e-3", "--train.global_batch=8192", "--train.epochs=30",
                "--schedule.lr_scaling=sqrt", "--schedule.base_batch=1024",
                "--schedule.legw=true", "--schedule.warmup_epochs=2",
                "--schedule.decay=roller_coaster",
                f"--schedule.roller_coaster_warmup={reading}")


def test_date_lenet_8k_worked_example():
    # DATE 3.6: B = 8192 from the baseline above. I = B0 I0 / B = 220 iterations in 30
    # epochs, so 220/30 iterations per epoch here (60000 / 8192 = 7.32 in the paper's run).
    plan = resolve_plan(_date_lenet_8k("baseline"))
    peak = 1.25e-3 * math.sqrt(8192 / 1024)
    assert plan.warmup_epochs == 16                         # LEGW: 2 x 8192 / 1024
    assert plan.peak_lr == pytest.approx(peak)              # sqrt rule: 3.536e-3
    ipe = 220 / 30
    lr = lambda t: plan_at(t, ipe, plan).lr  # noqa: E731
    assert 16 * ipe == pytest.approx(117.33, abs=0.01)      # "16 epochs (117 iterations)"
    assert lr(0) == 0.0                                     # "from 0"
    assert lr(58) == pytest.approx(58 / (16 * ipe) * peak)  # linear in the iteration
    assert lr(117) == pytest.approx(117 / (16 * ipe) * peak)
    assert plan_at(117, ipe, plan).phase == "warmup"
    # "from 118th to 220th iteration ... max{(220 - t) / ((1 - 2/30) x 220) x 1.25e-3 x
    # sqrt(8192/1024), 1e-6}" -- the example's w = 2 (w0) makes the LR drop to about half
    for t in (118, 150, 200, 219):
        assert lr(t) == pytest.approx((220 - t) / ((1 - 2 / 30) * 220) * peak)
    assert lr(118) == pytest.approx(0.4968 * peak, abs=1e-4 * peak)
    assert lr(220) == 1e-6                                  # the floor, at the last iteration


def test_date_roller_coaster_with_the_runs_own_warmup_is_continuous():
    # Algorithm 1 line 1 defines w = B w0 / B0 = 16: (E - e) / (E - w) is 1 at the end of warmup
    plan = resolve_plan(_date_lenet_8k("run"))
    peak = plan.peak_lr
    assert point_at(16, plan).lr == pytest.approx(peak)          # no drop after warmup
    assert point_at(23, plan).lr == pytest.approx(peak / 2)      # halfway from 16 to 30
    assert point_at(30 - 1e-9, plan).lr == pytest.approx(1e-6)   # (E - e) -> 0: the floor
    assert point_at(29.9, plan).lr == pytest.approx(0.1 / 14 * peak)  # linear to the end
    assert point_at(29.999, plan).lr == 1e-6                     # 0.001/14 x peak < floor


@pytest.mark.parametrize("log2k, init_lr, warmup", [
    # DATE Table 4 (ResNet-50, 90 epochs): batch 1024 x 2^log2k, init LR, warmup epochs
    (0, 2 ** 2.5, 10 / 2 ** 5),
    (1, 2 ** 3.0, 10 / 2 ** 4),
    (2, 2 ** 3.5, 10 / 2 ** 3),
    (3, 2 ** 4.0, 10 / 2 ** 2),
    (4, 2 ** 4.5, 10 / 2 ** 1),
    (5, 2 ** 5.0, 10),
])
def test_date_table_4_sqrt_scaling_and_legw(log2k, init_lr, warmup):
    # lr0 = 2^2.5 and w0 = 10/32 epochs at B0 = 1024; x sqrt(2) LR and x2 warmup per doubling
    cfg = _cfg("--optim.base_lr=5.656854249492381", f"--train.global_batch={1024 * 2 ** log2k}",
               "--train.epochs=90", "--schedule.lr_scaling=sqrt", "--schedule.base_batch=1024",
               "--schedule.legw=true", f"--schedule.warmup_epochs={10 / 32}",
               "--schedule.decay=roller_coaster")
    plan = resolve_plan(cfg)
    assert plan.peak_lr == pytest.approx(init_lr)
    assert plan.warmup_epochs == pytest.approx(warmup)
    # LEGW keeps the warmup iterations fixed: 10/32 epochs of 1.28M images at 1024
    assert plan.warmup_epochs * 1281167 / (1024 * 2 ** log2k) == pytest.approx(391, abs=0.5)
    assert point_at(warmup / 2, plan).lr == pytest.approx(init_lr / 2)


@pytest.mark.parametrize("batch, init_lr, warmup", [
    # DATE Table 3 (GNMT): sqrt scaling and LEGW from batch 256
    (256, 2 ** -0.5 / 1e3, 0.0145), (512, 2 ** 0.0 / 1e3, 0.0290),
    (1024, 2 ** 0.5 / 1e3, 0.0580), (2048, 2 ** 1.0 / 1e3, 0.1160),
    (4096, 2 ** 1.5 / 1e3, 0.2320),
])
def test_date_table_3_gnmt(batch, init_lr, warmup):
    cfg = _cfg(f"--optim.base_lr={2 ** -0.5 / 1e3}", f"--train.global_batch={batch}",
               "--train.epochs=2", "--schedule.lr_scaling=sqrt", "--schedule.base_batch=256",
               "--schedule.legw=true", "--schedule.warmup_epochs=0.0145")
    plan = resolve_plan(cfg)
    assert plan.peak_lr == pytest.approx(init_lr)
    assert plan.warmup_epochs == pytest.approx(warmup)


# ------------------------------------------------------------------------------ Codreanu

def test_codreanu_collapse_table_viii():
    # Codreanu V-B2 / Table VIII: batch 4096 (linear rule from 0.1 at 256 -> 1.6), 90 epochs,
    # 5 warmup epochs, linear decay with weight decay 5e-5; the last 5 epochs collapse:
    # power-2 poly from where the LR was, weight decay doubled to 1e-4, augmentation off.
    cfg = _cfg("--optim.base_lr=0.1", "--optim.weight_decay=5e-5", "--train.global_batch=4096",
               "--train.epochs=90", "--schedule.lr_scaling=linear", "--schedule.base_batch=256",
               "--schedule.warmup_epochs=5", "--schedule.collapse_epochs=5")
    s = build_schedule(cfg)
    before = s.at(84.9)
    assert before.lr == pytest.approx(1.6 * (1 - 79.9 / 85))    # still the linear decay
    assert (before.weight_decay, before.collapse) == (5e-5, False)
    left_off = 1.6 * 5 / 85                                     # 0.0941 at epoch 85
    start = s.at(85)
    assert start.lr == pytest.approx(left_off)                  # continues from where it is
    assert (start.weight_decay, start.collapse, start.phase) == (1e-4, True, "collapse")
    assert s.at(87.5).lr == pytest.approx(left_off * 0.25)      # power 2: (1 - 1/2)^2
    assert s.at(90).lr == 0.0
    # "the last 5-7% of the training": collapse_fraction = 0.06 of 90 epochs starts at 84.6
    frac = _cfg("--train.epochs=90", "--schedule.collapse_fraction=0.06")
    assert resolve_plan(frac).collapse_start == pytest.approx(84.6)
    assert not build_schedule(frac).at(84.5).collapse and build_schedule(frac).at(84.6).collapse


def _cyclic(*extra):
    # Codreanu VI / Fig. 4: batch 4096, 120 epochs, 5 warmup epochs, weight decay 5e-5
    return _cfg("--optim.base_lr=1.6", "--optim.weight_decay=5e-5", "--train.global_batch=4096",
                "--train.epochs=120", "--schedule.warmup_epochs=5", "--schedule.decay=cyclic",
                *extra)


def test_codreanu_cyclic_schedule_fig_4():
    s = build_schedule(_cyclic(), steps_per_epoch=1281167 / 4096)
    peak = 1.6
    frac = lambda e: s.at(e).lr / peak  # noqa: E731
    assert frac(5) == pytest.approx(1.0)                        # peak after warmup
    assert frac(30) == pytest.approx(1 - 25 / 115)              # linear until ~30: 0.783
    assert s.at(29.9).phase == "decay" and s.at(30).phase == "decay"
    assert frac(45) == pytest.approx(0.22)                      # "around 22%" at epoch 45
    assert 0.22 < frac(40) < frac(35) < frac(30)                # power-2 decay in between
    # cycle 1: x3 linearly over 3 epochs (re-warmup), then /4 over 12 epochs with power 2
    assert frac(46.5) == pytest.approx(0.44)                    # halfway up: (0.22 + 0.66) / 2
    assert frac(48) == pytest.approx(0.66)                      # 3 x 0.22
    # the power-2 horizon L with (1 - 12/L)^2 = 1/4 is 24 epochs: at 54, (1 - 6/24)^2
    assert frac(54) == pytest.approx(0.66 * 0.5625)
    assert frac(60) == pytest.approx(0.165)                     # 0.66 / 4: cycle 1 ends
    assert frac(63) == pytest.approx(0.495)                     # cycle 2 top: 3 x 0.165
    assert frac(75) == pytest.approx(0.12375)                   # cycle 2 ends: 0.495 / 4
    assert frac(120) == pytest.approx(0.22 * 0.75 ** 5)         # each cycle ends x3/4 lower
    # the cycles end at 60, 75, 90, 105, 120 and each end is a snapshot
    assert s.snapshot_epochs() == [60, 75, 90, 105, 120]
    steps = s.snapshot_steps()
    assert steps == [round(e * 1281167 / 4096) for e in (60, 75, 90, 105, 120)]
    assert all(s.point(k).snapshot for k in steps)
    assert not any(s.point(k).snapshot for k in (steps[0] - 1, steps[0] + 1, 100))
    # Codreanu VI: the main trajectory has no collapse segment anywhere (its snapshots branch
    # into collapses); the weight decay stays the half value throughout
    points = [s.at(e / 4) for e in range(0, 4 * 120 + 1)]
    assert not any(p.collapse or p.phase == "collapse" for p in points)
    assert {p.weight_decay for p in points} == {5e-5}
    assert s.at(46).phase == "rewarm" and s.at(50).phase == "decay"


def test_codreanu_cyclic_options():
    s = build_schedule(_cyclic("--schedule.cyclic_snapshot_start=true"))
    assert s.snapshot_epochs() == [45, 60, 75, 90, 105, 120]   # + Table XI's 1 at 45


@pytest.mark.parametrize("snapshot", [45.0, 60.0, 120.0])
def test_a_collapse_branch_from_a_cycle_end_snapshot(snapshot):
    # Table XI: "Nc" = 3 collapse epochs from snapshot N (1c at 48 = 45 + 3): power-2 decay to
    # 0 from the snapshot's LR, weight decay x2 (5e-5 -> 1e-4), augmentation off
    main = build_schedule(_cyclic("--schedule.cyclic_snapshot_start=true"))
    branch = build_schedule(_cyclic("--schedule.cyclic_snapshot_start=true",
                                    f"--schedule.branch_from={snapshot}",
                                    "--schedule.collapse_epochs=3"), steps_per_epoch=10)
    assert branch.plan.end_epochs == snapshot + 3
    assert branch.snapshot_epochs() == []                        # a branch takes no snapshots
    start_lr = main.at(snapshot).lr
    for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 2.9):
        p = branch.at(snapshot + t)
        assert p.lr == pytest.approx(start_lr * (1 - t / 3) ** 2)
        assert (p.collapse, p.phase, p.weight_decay) == (True, "collapse", pytest.approx(1e-4))
    assert branch.at(snapshot + 3).lr == 0.0
    assert [branch.collapsing(int(snapshot))(k) for k in range(10)] == [True] * 10
    # before the branch point, the main schedule exactly
    assert branch.at(snapshot - 1).lr == main.at(snapshot - 1).lr
    assert not branch.at(snapshot - 1).collapse


def test_bad_collapse_branches_are_refused():
    with pytest.raises(ConfigError, match=r"schedule\.collapse_epochs"):
        _cyclic("--schedule.branch_from=60")                     # no length
    with pytest.raises(ConfigError, match=r"schedule\.branch_from"):
        resolve_plan(_cyclic("--schedule.branch_from=130", "--schedule.collapse_epochs=3"))


def test_the_data_path_collapses_at_the_step_the_collapse_starts():
    # collapse_fraction 0.06 of 90 epochs starts at epoch 84.6: step 6 of 10 in epoch 84
    s = build_schedule(_cfg("--train.epochs=90", "--schedule.collapse_fraction=0.06"),
                       steps_per_epoch=10)
    assert [s.collapsing(84)(k) for k in range(10)] == [False] * 6 + [True] * 4
    assert not any(s.collapsing(83)(k) for k in range(10))
    assert all(s.collapsing(85)(k) for k in range(10))


def test_weight_decay_multistep_with_collapse():
    # Codreanu V-C (Fig. 3, batch 64K): weight decay increased in steps, then the collapse
    cfg = _cfg("--optim.weight_decay=5e-5", "--train.epochs=100",
               "--schedule.wd_milestones=[40, 70]", "--schedule.wd_values=[7.5e-5, 1e-4]",
               "--schedule.collapse_epochs=7")
    s = build_schedule(cfg)
    assert s.at(39.9).weight_decay == 5e-5
    assert s.at(40).weight_decay == 7.5e-5
    assert s.at(70).weight_decay == 1e-4
    assert s.at(93).weight_decay == pytest.approx(2e-4)         # collapse doubles the last step


def test_plan_at_is_per_iteration_and_pure():
    cfg = _cfg("--train.epochs=10", "--schedule.warmup_epochs=1", "--schedule.warmup_start_lr=0")
    ipe = 100
    lrs = [plan_at(it, ipe, cfg).lr for it in range(0, 1001)]
    assert len(set(lrs[:101])) == 101                           # a new LR every iteration
    assert lrs == [plan_at(it, ipe, cfg).lr for it in range(0, 1001)]  # same inputs, same result
    assert max(lrs) == pytest.approx(cfg.optim.base_lr) and lrs[-1] == 0.0
    assert snapshot_iterations(resolve_plan(cfg), ipe) == []


def test_job_config_keeps_its_meaning():
    # jobs/local/fashion_mnist.toml: warmup 0.01 -> 0.1 over 1 epoch, linear to 0 at 10
    cfg = load_config("jobs/local/fashion_mnist.toml")
    s = build_schedule(cfg, steps_per_epoch=234)
    assert s.at(0).lr == pytest.approx(0.01)
    assert s.at(0.5).lr == pytest.approx(0.055)
    assert s.at(1).lr == pytest.approx(0.1)
    assert s.at(5.5).lr == pytest.approx(0.05)
    assert all(s.at(e).weight_decay == 5e-4 and not s.at(e).collapse and not s.at(e).snapshot
               for e in (0, 3, 9.99))


@pytest.mark.parametrize("overrides, named", [
    (["--schedule.lr_scaling=sqrt"], "schedule.base_batch"),          # no baseline batch
    (["--schedule.legw=true"], "schedule.base_batch"),
    (["--schedule.lr_scaling=cubic", "--schedule.base_batch=256"], "schedule.lr_scaling"),
    (["--schedule.warmup=exponential"], "schedule.warmup"),
    (["--schedule.decay=step"], "schedule.decay"),
    (["--schedule.wd_milestones=[10]"], "schedule.wd_values"),
    (["--schedule.collapse_epochs=3", "--schedule.collapse_fraction=0.05"],
     "schedule.collapse_fraction"),
    (["--schedule.decay=cyclic", "--schedule.collapse_epochs=3"], "schedule.collapse_epochs"),
    (["--schedule.cyclic_decay_factor=0.5"], "schedule.cyclic_decay_factor"),
    (["--schedule.roller_coaster_warmup=w0"], "schedule.roller_coaster_warmup"),
    # plans that cannot run with this batch and these epochs: refused at load as well
    (["--schedule.legw=true", "--schedule.base_batch=256", "--schedule.warmup_epochs=1",
      "--train.global_batch=1024", "--train.epochs=3"], "schedule.warmup_epochs"),
    (["--schedule.decay=cyclic", "--train.epochs=100"], "schedule.cyclic_decay_epochs"),
    (["--schedule.decay=cyclic", "--train.epochs=120", "--schedule.cyclic_start_ratio=0.9"],
     "schedule.cyclic_start_ratio"),
    (["--schedule.warmup_epochs=5", "--train.epochs=10", "--schedule.collapse_epochs=6"],
     "schedule.collapse_epochs"),
])
def test_bad_schedule_options_are_refused_at_load(overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        _cfg(*overrides)


def test_plotter_draws_a_job_and_refuses_a_bad_one(tmp_path, capsys):
    from hpcsgd.plot import schedules as tool
    out = tmp_path / "fm.png"
    assert tool.main(["jobs/local/fashion_mnist.toml", "--out", str(out),
                      "--schedule.collapse_epochs=2"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "collapse from 8" in capsys.readouterr().out
    curve = tool.schedule_curve(_cyclic(), images=4096 * 10)     # 10 iterations per epoch
    assert len(curve["epoch"]) == 1201 and curve["snapshots"] == [60, 75, 90, 105, 120]
    assert tool.main(["jobs/local/fashion_mnist.toml", "--out", str(out),
                      "--schedule.decay=wavy"]) == 2


def test_the_schedule_plot_of_an_lm_job_counts_the_trainers_windows_per_epoch():
    from hpcsgd.lm.streams import steps_per_epoch, stream_length
    from hpcsgd.lm.train import load_ids
    from hpcsgd.plot.schedules import iterations_per_epoch
    for fraction in ("1.0", "0.5"):
        cfg = load_config("jobs/experiments/ptb_lstm.toml", [f"--lm.train_fraction={fraction}"])
        _, train_ids, _ = load_ids(cfg)  # what the LM trainer trains on
        windows = steps_per_epoch(stream_length(len(train_ids), cfg.train.global_batch),
                                  cfg.lm.seq_len)
        assert iterations_per_epoch(cfg) == windows
