"""Optimizer construction, momentum semantics (Caffe vs PyTorch, Goyal's momentum
correction) and the schedule hand-off."""
import pytest
import torch
import torch.nn as nn

from hpcsgd.config import ConfigError, OptimConfig, load_config
from hpcsgd.optim.date import DateBounded
from hpcsgd.optim.lars import LARS
from hpcsgd.optim.momentum import MomentumSGD
from hpcsgd.optim.build import apply_schedule_, build_optimizer, param_groups
from hpcsgd.schedule.plan import SchedulePoint, build_schedule


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32, 3))


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def _run(model, opt, lrs, seed=0):
    x, y = _batch(seed)
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_param_groups_split_weights_from_bn_and_biases():
    model = _model()
    groups = param_groups(model, OptimConfig(weight_decay=1e-4))
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in groups[0]["params"]] == ["0.weight", "4.weight"]
    assert [names[id(p)] for p in groups[1]["params"]] == ["0.bias", "1.weight", "1.bias",
                                                          "4.bias"]
    assert (groups[0]["weight_decay"], groups[0]["decays"], groups[0]["layerwise"]) == \
        (1e-4, True, True)
    # no weight decay (Goyal et al.), but a LARS/DATE ratio of their own (You et al. 3.2.3)
    assert (groups[1]["weight_decay"], groups[1]["decays"], groups[1]["layerwise"]) == \
        (0.0, False, True)


def test_default_optimizer_is_unchanged():
    # jobs/local/fashion_mnist.toml and the defaults: PyTorch's own momentum SGD
    cfg = load_config("jobs/local/fashion_mnist.toml")
    opt = build_optimizer(_model(), cfg.optim)
    assert type(opt) is torch.optim.SGD
    assert opt.param_groups[0]["momentum"] == 0.9 and not opt.param_groups[0]["nesterov"]
    assert opt.param_groups[0]["weight_decay"] == 5e-4 and opt.param_groups[1]["weight_decay"] == 0


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_pytorch_form_equals_torch_sgd(momentum, nesterov):
    lrs = [0.05 * (k + 1) for k in range(5)] + [0.25 * 0.8 ** k for k in range(10)]
    a, b = _model(), _model()
    groups = lambda m: param_groups(m, OptimConfig(weight_decay=1e-3))  # noqa: E731
    _run(a, MomentumSGD(groups(a), momentum=momentum, nesterov=nesterov, style="pytorch"), lrs)
    _run(b, torch.optim.SGD(groups(b), lr=0.1, momentum=momentum, nesterov=nesterov), lrs)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("nesterov", [False, True])
def test_caffe_and_pytorch_forms_agree_at_constant_lr_and_differ_when_it_changes(nesterov):
    def final(style, lrs):
        m = _model()
        opt = MomentumSGD(param_groups(m, OptimConfig(weight_decay=1e-3)), momentum=0.9,
                          nesterov=nesterov, style=style)
        _run(m, opt, lrs)
        return torch.cat([p.detach().flatten() for p in m.parameters()])

    constant = [0.2] * 12
    torch.testing.assert_close(final("caffe", constant), final("pytorch", constant),
                               rtol=1e-5, atol=1e-6)
    drop = [0.2] * 6 + [0.02] * 6     # a 10x step decay
    assert (final("caffe", drop) - final("pytorch", drop)).abs().max() > 1e-3


def test_pytorch_form_is_caffe_with_goyal_momentum_correction():
    # Goyal et al. 2.2: when the LR changes from lr_t to lr_t+1, scale Caffe's velocity by
    # lr_t+1 / lr_t ("momentum correction"). That makes it the PyTorch form exactly.
    lrs = [0.02 * (k + 1) for k in range(8)] + [0.16 * (1 - k / 10) ** 2 for k in range(10)]
    a, b = _model(), _model()
    caffe = MomentumSGD(param_groups(a, OptimConfig()), momentum=0.9, style="caffe")
    x, y = _batch()
    previous = None
    for lr in lrs:
        if previous:
            for state in caffe.state.values():
                state["momentum_buffer"].mul_(lr / previous)     # the correction
        for group in caffe.param_groups:
            group["lr"] = lr
        caffe.zero_grad()
        nn.functional.cross_entropy(a(x), y).backward()
        caffe.step()
        previous = lr
    _run(b, torch.optim.SGD(param_groups(b, OptimConfig()), lr=0.1, momentum=0.9), lrs)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options, kind", [
    (dict(), torch.optim.SGD),
    (dict(momentum_style="caffe"), MomentumSGD),
    (dict(name="lars"), LARS),
    (dict(name="lars", lars_clip=True, momentum_style="caffe"), LARS),
    (dict(date=True), DateBounded),
    (dict(name="adagrad"), torch.optim.Adagrad),
    (dict(name="rmsprop", date=True), DateBounded),
    (dict(name="adam", date=True), DateBounded),
])
def test_apply_schedule_sets_lr_everywhere_and_weight_decay_where_it_decays(options, kind):
    opt = build_optimizer(_model(), OptimConfig(**options))
    assert isinstance(opt, kind)
    apply_schedule_(opt, SchedulePoint(lr=0.37, weight_decay=2e-4))
    assert [g["lr"] for g in opt.param_groups] == [0.37, 0.37]
    assert [g["weight_decay"] for g in opt.param_groups] == [2e-4, 0.0]


@pytest.mark.parametrize("options, lr", [
    (dict(), 0.1), (dict(momentum_style="caffe", nesterov=True), 0.1),
    (dict(name="lars"), 5.0), (dict(name="lars", lars_clip=True), 0.5),
    (dict(name="sgd", momentum=0.0, date=True), 0.05), (dict(date=True), 0.01),
    (dict(name="adagrad", date=True), 0.01), (dict(name="rmsprop", date=True), 1e-3),
    (dict(name="adam", date=True), 3e-3), (dict(name="adam"), 1e-2),
])
def test_every_optimizer_learns_under_a_schedule(options, lr):
    # a real loop: schedule -> apply_schedule_ -> step, on a learnable toy problem
    cfg = load_config(None, [f"--optim.base_lr={lr}", "--train.epochs=2",
                             "--schedule.warmup_epochs=0.5", "--schedule.collapse_epochs=0.5"])
    for k, v in options.items():
        setattr(cfg.optim, k, v)
    cfg.optim.check()
    model = _model(3)
    opt, schedule = build_optimizer(model, cfg.optim), build_schedule(cfg, steps_per_epoch=20)
    x, y = _batch(4)
    first = nn.functional.cross_entropy(model(x), y).item()
    for step in range(40):
        apply_schedule_(opt, schedule.at(step / 20))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert nn.functional.cross_entropy(model(x), y).item() < 0.7 * first


@pytest.mark.parametrize("options", [
    dict(momentum_style="caffe"), dict(name="lars"), dict(name="adam", date=True), dict(date=True)])
def test_step_with_a_closure_returns_its_loss_and_steps_as_without_one(options):
    # torch.optim's contract: step(closure) runs the closure with autograd on (step itself
    # runs under no_grad) and returns its loss
    cfg = load_config(None, ["--optim.base_lr=0.05"])
    for k, v in options.items():
        setattr(cfg.optim, k, v)
    x, y = _batch(5)
    with_closure, plain = _model(6), _model(6)
    opt_c, opt_p = build_optimizer(with_closure, cfg.optim), build_optimizer(plain, cfg.optim)

    def closure():
        opt_c.zero_grad()
        loss = nn.functional.cross_entropy(with_closure(x), y)
        loss.backward()
        return loss
    for _ in range(3):
        expected = nn.functional.cross_entropy(with_closure(x), y).item()
        assert opt_c.step(closure).item() == pytest.approx(expected)
        opt_p.zero_grad()
        nn.functional.cross_entropy(plain(x), y).backward()
        assert opt_p.step() is None
    for a, b in zip(with_closure.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("overrides, named", [
    (["--optim.name=lamb"], "optim.name"),
    (["--optim.momentum_style=tf"], "optim.momentum_style"),
    (["--optim.name=adam", "--optim.nesterov=true"], "optim.nesterov"),
    (["--optim.eps=0"], "optim.eps"),
    (["--optim.adam_betas=[0.9]"], "optim.adam_betas"),
    (["--optim.rmsprop_alpha=1.0"], "optim.rmsprop_alpha"),
])
def test_bad_optimizer_options_are_refused(overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(None, overrides)
