"""DATE's bounded per-layer ratio (You et al. 2019, 3.5 and Algorithm 1) on every base
optimizer, against references written here from the equations."""
import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from hpcsgd.config import ConfigError, OptimConfig, load_config
from hpcsgd.optim.date import DateBounded, date_ratio
from hpcsgd.optim.build import build_optimizer, clip_before_update


def test_bounds_clip_the_ratio():
    # Algorithm 1 line 15: r = min{max{||w|| / ||g||, lower}, upper}
    assert date_ratio(5.0, 0.5, lower=0.1, upper=10.0) == 10.0    # 5 / 0.5 = 10, inside
    assert date_ratio(5.0, 0.5, lower=0.1, upper=4.0) == 4.0      # capped by the upper bound
    assert date_ratio(0.1, 10.0, lower=0.1, upper=4.0) == 0.1     # 0.01 lifted to the lower
    assert date_ratio(3.0, 2.0, lower=0.1, upper=4.0) == 1.5
    # line 13: a zero norm gives r = min{max{1, lower}, upper}
    assert date_ratio(0.0, 2.0, lower=0.1, upper=4.0) == 1.0
    assert date_ratio(3.0, 0.0, lower=2.0, upper=4.0) == 2.0
    assert date_ratio(0.0, 0.0, lower=0.1, upper=0.5) == 0.5


# -------------------------------------------------------------- references (numpy)

def _ratio(w, g, lower, upper):
    wn, gn = math.sqrt((w * w).sum()), math.sqrt((g * g).sum())
    return min(max(wn / gn if wn > 0 and gn > 0 else 1.0, lower), upper)


def _reference(kind, ws, grad_fn, lrs, *, beta, lower, upper, mu=0.9, betas=(0.9, 0.999),
               alpha=0.99, eps=1e-8):
    """Each base optimizer's update with the layer LR eta r (adaptive) or r on the direction
    (momentum), r from the raw gradient (no weight decay inside the ratio)."""
    ws = [w.copy() for w in ws]
    s1 = [np.zeros_like(w) for w in ws]
    s2 = [np.zeros_like(w) for w in ws]
    for t, lr in enumerate(lrs, start=1):
        for j, g in enumerate(grad_fn(ws)):
            w = ws[j]
            r = _ratio(w, g, lower, upper)
            d = g + beta * w
            if kind == "sgd":                         # plain SGD
                ws[j] = w - lr * r * d
            elif kind in ("momentum", "nesterov"):    # PyTorch form: first v = r d
                s1[j] = r * d if t == 1 else mu * s1[j] + r * d
                step = r * d + mu * s1[j] if kind == "nesterov" else s1[j]
                ws[j] = w - lr * step
            elif kind == "caffe":                     # Caffe form: v = mu v + lr r d
                s1[j] = mu * s1[j] + lr * r * d
                ws[j] = w - s1[j]
            elif kind == "adagrad":
                s1[j] = s1[j] + d * d
                ws[j] = w - lr * r * d / (np.sqrt(s1[j]) + eps)
            elif kind == "rmsprop":
                s1[j] = alpha * s1[j] + (1 - alpha) * d * d
                ws[j] = w - lr * r * d / (np.sqrt(s1[j]) + eps)
            elif kind == "adam":
                s1[j] = betas[0] * s1[j] + (1 - betas[0]) * d
                s2[j] = betas[1] * s2[j] + (1 - betas[1]) * d * d
                bc1, bc2 = 1 - betas[0] ** t, 1 - betas[1] ** t
                ws[j] = w - lr * r / bc1 * s1[j] / (np.sqrt(s2[j]) / math.sqrt(bc2) + eps)
    return ws


CASES = {  # reference kind -> OptimConfig options
    "sgd": dict(name="sgd", momentum=0.0),
    "momentum": dict(name="sgd", momentum=0.9),
    "nesterov": dict(name="sgd", momentum=0.9, nesterov=True),
    "caffe": dict(name="sgd", momentum=0.9, momentum_style="caffe"),
    "adagrad": dict(name="adagrad"),
    "rmsprop": dict(name="rmsprop"),
    "adam": dict(name="adam"),
}


class _Layers(nn.Module):
    """Weight tensors only (ndim >= 2), so every one gets the DATE ratio."""

    def __init__(self, ws):
        super().__init__()
        self.ws = nn.ParameterList([nn.Parameter(torch.tensor(w)) for w in ws])


@pytest.mark.parametrize("kind", sorted(CASES))
def test_date_on_each_base_optimizer_matches_the_reference(kind):
    rng = np.random.default_rng(3)
    shapes = [(6, 3, 3, 3), (12, 54), (4, 12), (3, 4)]
    ws = [rng.normal(0, 0.5, s) for s in shapes]
    targets = [rng.normal(0, 1, s) for s in shapes]
    scales = [0.5, 0.005, 8.0, 1.0]      # ratios ~ 2, far above 20, far below 0.3, ~1

    def grad_fn(ws_):
        return [s * (w - t) for s, w, t in zip(scales, ws_, targets)]

    lrs = [0.01 * (k + 1) for k in range(5)] + [0.05 * (1 - k / 30) for k in range(30)]
    lower, upper, beta = 0.3, 20.0, 1e-3
    expected = _reference(kind, ws, grad_fn, lrs, beta=beta, lower=lower, upper=upper)

    model = _Layers(ws)
    cfg = OptimConfig(date=True, date_lower=lower, date_upper=upper, weight_decay=beta,
                      **CASES[kind])
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, DateBounded)
    first_ratios = None
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        loss = sum(0.5 * s * ((p - torch.tensor(t)) ** 2).sum()
                   for s, p, t in zip(scales, model.ws, targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first_ratios = first_ratios or list(opt.last_ratios)
    assert first_ratios[1] == upper and first_ratios[2] == lower   # both bounds bind
    assert lower < first_ratios[0] < upper
    for p, w in zip(model.ws, expected):
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-9, atol=1e-12)


def _ratio_or_one(p):
    w, g = float(p.detach().norm()), float(p.grad.norm())
    return w / g if w > 0 and g > 0 else 1.0


def test_no_weight_decay_inside_the_ratio_and_every_tensor_has_its_ratio():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = build_optimizer(model, OptimConfig(date=True, weight_decay=10.0, date_lower=0.0,
                                             date_upper=1e9))
    model(torch.randn(8, 5)).square().sum().backward()
    # the links run over the groups in order: the weight matrices first, then BN and biases
    order = [p for p in model.parameters() if p.ndim == 2] + \
        [p for p in model.parameters() if p.ndim == 1]
    raw = [_ratio_or_one(p) for p in order]
    opt.step()
    assert opt.last_ratios == pytest.approx(raw)              # ||w|| / ||g||, no 10 ||w|| term
    assert opt.last_ratios[2] != 1.0                          # a bias with its own ratio


def test_mlperf_style_exclusion_keeps_bn_and_bias_at_ratio_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = build_optimizer(model, OptimConfig(date=True, date_lower=0.0, date_upper=1e9,
                                             layerwise_bn_bias=False))
    model(torch.randn(8, 5)).square().sum().backward()
    opt.step()
    assert opt.last_ratios[2:] == [1.0] * 4                   # BN gamma/beta and biases


def test_state_dict_round_trip_with_adam_inside():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    x, y = torch.randn(16, 6), torch.randn(16, 2)
    cfg = OptimConfig(name="adam", date=True, base_lr=1e-3)
    opt = build_optimizer(model, cfg)

    def train(m, o, steps):
        for _ in range(steps):
            o.zero_grad()
            ((m(x) - y) ** 2).mean().backward()
            o.step()

    train(model, opt, 4)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    clone = copy.deepcopy(model)
    opt2 = build_optimizer(clone, cfg)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    train(model, opt, 4)
    train(clone, opt2, 4)
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="inner"):
        opt2.load_state_dict(torch.optim.SGD(clone.parameters(), lr=0.1).state_dict())


def test_bad_date_options_are_refused():
    with pytest.raises(ValueError, match="bounds"):
        DateBounded([nn.Parameter(torch.ones(2, 2))], lambda g: torch.optim.SGD(g, lr=0.1),
                    lower=2.0, upper=1.0)
    with pytest.raises(ConfigError, match=r"optim\.date"):
        load_config(None, ["--optim.name=lars", "--optim.date=true"])
    with pytest.raises(ConfigError, match=r"optim\.date_lower"):
        load_config(None, ["--optim.date=true", "--optim.date_lower=5", "--optim.date_upper=1"])


def test_ratio_is_taken_from_the_gradient_before_clipping():
    # the LSTM clips the averaged gradient; DATE's r (Algorithm 1 line 13) must see g_t as it
    # is, and the base optimizer then moves by the clipped gradient
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    params = list(model.parameters())
    opt = build_optimizer(model, OptimConfig(date=True, base_lr=0.1, momentum=0.0,
                                             weight_decay=0.0, date_lower=0.0, date_upper=1e9))
    clip_before_update(opt, params, 1e-3)
    (model(torch.randn(16, 6)) ** 2).sum().backward()
    raw = [_ratio_or_one(p) for p in params]
    before = [p.detach().clone() for p in params]
    grads = [p.grad.clone() for p in params]
    total = math.sqrt(sum(float(g.square().sum()) for g in grads))
    assert total > 1e-3                                       # the clip bites
    opt.step()
    assert sorted(opt.last_ratios) == pytest.approx(sorted(raw))
    for p, w, g, r in zip(params, before, grads, raw):        # plain SGD: w - lr r g_clipped
        torch.testing.assert_close(p.detach(), w - 0.1 * r * g * (1e-3 / (total + 1e-6)))
    summary = opt.ratio_summary()
    assert summary["min"] == pytest.approx(min(raw)) and summary["max"] == pytest.approx(max(raw))
    assert summary["at_upper"] == 0.0 and summary["at_lower"] == 0.0


def test_ratio_summary_counts_the_layers_at_the_bounds():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 2))
    opt = build_optimizer(model, OptimConfig(date=True, date_lower=0.5, date_upper=0.5))
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    summary = opt.ratio_summary()                              # lower = upper: all pinned
    assert summary["p50"] == 0.5 and summary["at_lower"] == summary["at_upper"] == 1.0


def test_ratio_summary_gives_the_raw_ratio_beyond_the_bounds():
    # the applied ratio is clipped, so a run pinned at a bound shows nothing of how far
    # beyond it ||w|| / ||g|| went; the summary carries the raw ratio's quantiles as well
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 2))
    params = list(model.parameters())
    opt = build_optimizer(model, OptimConfig(date=True, date_lower=0.5, date_upper=0.5))
    model(torch.randn(4, 6)).sum().backward()
    raw = sorted(_ratio_or_one(p) for p in params)
    opt.step()
    summary = opt.ratio_summary()
    assert summary["p50"] == 0.5                               # applied: pinned
    assert summary["raw_min"] == pytest.approx(raw[0]) and summary["raw_max"] == pytest.approx(raw[-1])
    assert summary["raw_p50"] == pytest.approx(raw[len(raw) // 2])
    assert summary["raw_p50"] != pytest.approx(0.5)
