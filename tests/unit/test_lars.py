"""LARS (You, Gitman, Ginsburg 2017, 3.2.3): hand-worked ratios, an independent reference
written here from the paper's equations, the LARC clip variant, exclusions, state dicts."""
import copy
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from hpcsgd.config import ConfigError, OptimConfig, load_config
from hpcsgd.optim.lars import LARS, lars_factor, lars_layer_lr, lars_local_lr
from hpcsgd.optim.build import build_optimizer

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _param(values):
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_ratio_of_the_papers_table_4():
    # Table 4, AlexNet conv1.0 at iteration 1: ||w|| = 0.098, ||grad w|| = 0.017, ratio 5.76
    assert 0.098 / 0.017 == pytest.approx(5.76, abs=0.01)
    assert lars_local_lr(0.098, 0.017, eta=0.001, weight_decay=0.0) == pytest.approx(0.005765,
                                                                                      abs=1e-6)


def test_two_steps_on_a_tiny_layer_by_hand():
    # w = (3, 4): ||w|| = 5; g = (0, 0.5): ||g|| = 0.5; eta 0.001, beta 0.01, gamma 2, mu 0.9
    w = _param([3.0, 4.0])
    opt = LARS([w], lr=2.0, momentum=0.9, weight_decay=0.01, eta=0.001, style="caffe")
    # (1) alpha = 0.001 x 5 / (0.5 + 0.01 x 5) = 0.005 / 0.55 = 0.0090909
    assert lars_local_lr(5.0, 0.5, eta=0.001, weight_decay=0.01) == pytest.approx(0.005 / 0.55)
    # (2) layer LR = gamma x alpha = 0.0181818
    assert lars_layer_lr(5.0, 0.5, lr=2.0, eta=0.001, weight_decay=0.01) == \
        pytest.approx(0.01 / 0.55)
    w.grad = torch.tensor([0.0, 0.5], dtype=torch.float64)
    opt.step()
    # (3) g + beta w = (0.03, 0.54); (4) a = 0.0181818 x (0.03, 0.54) = (0.00054545, 0.0098182)
    # (5) w = (3 - 0.00054545, 4 - 0.0098182)
    assert w.detach().tolist() == pytest.approx([3 - 0.03 / 55, 4 - 0.54 / 55], rel=1e-12)
    assert opt.state[w]["layer_lr"] == pytest.approx(0.01 / 0.55)
    # step 2: g = (0.5, 0); a = 0.9 a + 2 alpha' (g + 0.01 w), alpha' from the new ||w||
    w1 = np.array([3 - 0.03 / 55, 4 - 0.54 / 55])
    a1 = np.array([0.03, 0.54]) / 55
    n1 = np.linalg.norm(w1)
    alpha2 = 0.001 * n1 / (0.5 + 0.01 * n1)
    a2 = 0.9 * a1 + 2.0 * alpha2 * (np.array([0.5, 0.0]) + 0.01 * w1)
    w.grad = torch.tensor([0.5, 0.0], dtype=torch.float64)
    opt.step()
    assert w.detach().numpy() == pytest.approx(w1 - a2, rel=1e-12)


def test_trust_ratio_is_one_when_a_norm_is_zero():
    assert lars_factor(0.0, 0.3, lr=2.0, eta=0.001, weight_decay=0.01) == 1.0
    assert lars_factor(1.0, 0.0, lr=2.0, eta=0.001, weight_decay=0.01) == 1.0
    zero_w, zero_g = _param([0.0, 0.0]), _param([1.0, 2.0])
    opt = LARS([zero_w, zero_g], lr=0.5, momentum=0.9, weight_decay=0.1, style="caffe")
    zero_w.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    zero_g.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    assert zero_w.detach().tolist() == [-0.5, 0.5]                   # the global LR: 0.5 x g
    assert zero_g.detach().tolist() == pytest.approx([0.95, 1.9])    # 0.5 x 0.1 x w decay only


def test_larc_clip_policy():
    # NVCaffe LARC "clip": layer LR = min(gamma, alpha); alpha = 0.0090909 as above
    alpha = 0.005 / 0.55
    assert lars_layer_lr(5.0, 0.5, lr=2.0, eta=0.001, weight_decay=0.01, clip=True) == \
        pytest.approx(alpha)                                         # alpha caps gamma = 2
    assert lars_layer_lr(5.0, 0.5, lr=0.005, eta=0.001, weight_decay=0.01, clip=True) == \
        pytest.approx(0.005)                                         # gamma < alpha: gamma
    assert lars_layer_lr(0.0, 0.5, lr=0.005, eta=0.001, weight_decay=0.01, clip=True) == 0.005
    assert lars_factor(5.0, 0.5, lr=0.0, eta=0.001, weight_decay=0.01, clip=True) == 1.0
    w = _param([3.0, 4.0])
    opt = LARS([w], lr=2.0, momentum=0.9, weight_decay=0.01, clip=True)
    w.grad = torch.tensor([0.0, 0.5], dtype=torch.float64)
    opt.step()
    assert w.detach().tolist() == pytest.approx([3 - alpha * 0.03, 4 - alpha * 0.54])


def test_eps_enters_the_denominator():
    assert lars_local_lr(5.0, 0.5, eta=0.001, weight_decay=0.01, eps=0.45) == \
        pytest.approx(0.005 / 1.0)


# ------------------------------------------------------------- independent reference

def _reference_lars(ws, grad_fn, gammas, *, eta, beta, mu, style):
    """You et al. 3.2.3 written out with numpy, one layer at a time.

    caffe (the paper): alpha = eta||w||/(||g|| + beta||w||); eta_l = gamma alpha;
    g <- g + beta w; a <- mu a + eta_l g; w <- w - a.
    pytorch form: v <- mu v + alpha (g + beta w); w <- w - gamma v.
    """
    ws = [w.copy() for w in ws]
    bufs = [np.zeros_like(w) for w in ws]
    for gamma in gammas:
        grads = grad_fn(ws)
        for j, (w, g) in enumerate(zip(ws, grads)):
            wn, gn = math.sqrt((w * w).sum()), math.sqrt((g * g).sum())
            alpha = eta * wn / (gn + beta * wn) if wn > 0 and gn > 0 else 1.0
            d = g + beta * w
            if style == "caffe":
                bufs[j] = mu * bufs[j] + gamma * alpha * d
                ws[j] = w - bufs[j]
            else:
                bufs[j] = mu * bufs[j] + alpha * d
                ws[j] = w - gamma * bufs[j]
    return ws


@pytest.mark.parametrize("style", ["caffe", "pytorch"])
def test_lars_matches_an_independent_reference_over_many_steps(style):
    rng = np.random.default_rng(7)
    shapes = [(8, 3, 3, 3), (16, 72), (16,), (5, 16), (5,)]
    ws = [rng.normal(0, 0.3, s) for s in shapes]
    ws[4][:] = 0.0                                   # a zero-initialised bias: ratio 1 first
    targets = [rng.normal(0, 1, s) for s in shapes]
    scales = [0.5, 2.0, 0.01, 5.0, 1.0]              # very different ||w|| / ||g|| per layer

    def grad_fn(ws_):                                # quadratic loss: g = s (w - target)
        return [s * (w - t) for s, w, t in zip(scales, ws_, targets)]

    # a warmup-then-decay global LR, so the two momentum forms are both exercised
    gammas = [0.2 + 0.3 * k for k in range(10)] + [3.0 * (1 - k / 50) ** 2 for k in range(50)]
    expected = _reference_lars(ws, grad_fn, gammas, eta=0.001, beta=5e-4, mu=0.9, style=style)

    params = [nn.Parameter(torch.tensor(w)) for w in ws]
    opt = LARS(params, lr=0.0, momentum=0.9, weight_decay=5e-4, eta=0.001, style=style)
    for gamma in gammas:
        for group in opt.param_groups:
            group["lr"] = gamma
        loss = sum(0.5 * s * ((p - torch.tensor(t)) ** 2).sum()
                   for s, p, t in zip(scales, params, targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p, w in zip(params, expected):
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-10, atol=1e-12)
    assert not np.allclose(params[0].detach().numpy(), ws[0])   # it did move


def test_lars_scales_every_tensor_by_default_biases_and_bn_included():
    # You et al. 3.2.3 / Table 4: every parameter tensor is a layer with its own ratio (the
    # bias of a layer is a layer of its own); weight decay still skips BN/bias by default
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(32, 3))
    nn.init.uniform_(model[1].bias, 0.1, 0.2)                 # non-zero BN beta: a real ratio
    cfg = OptimConfig(name="lars", weight_decay=0.01, momentum=0.9, base_lr=2.0)
    opt = build_optimizer(model, cfg)
    assert all(g["layerwise"] for g in opt.param_groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(4, 1, 6, 6)).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    for name in ("1.weight", "1.bias", "0.bias", "3.bias"):   # BN gamma/beta, biases: no wd
        w, g = before[name], grads[name]
        alpha = lars_local_lr(float(w.norm()), float(g.norm()), eta=0.001, weight_decay=0.0)
        torch.testing.assert_close(model.get_parameter(name).detach(), w - 2.0 * alpha * g)
    w, g = before["0.weight"], grads["0.weight"]                          # a conv layer
    alpha = lars_local_lr(float(w.norm()), float(g.norm()), eta=0.001, weight_decay=0.01)
    torch.testing.assert_close(model.get_parameter("0.weight").detach(),
                               w - 2.0 * alpha * (g + 0.01 * w))


def test_mlperf_style_exclusion_is_a_named_option():
    # optim.layerwise_bn_bias = false: BN/bias take plain momentum at the global LR, no wd
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(32, 3))
    cfg = OptimConfig(name="lars", weight_decay=0.01, momentum=0.9, base_lr=2.0,
                      layerwise_bn_bias=False)
    opt = build_optimizer(model, cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(4, 1, 6, 6)).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    for name in ("1.weight", "1.bias", "0.bias", "3.bias"):
        torch.testing.assert_close(model.get_parameter(name).detach(),
                                   before[name] - 2.0 * grads[name])     # gamma x g, no wd
    cfg2 = OptimConfig(name="lars", no_decay_bn_bias=False, layerwise_bn_bias=True)
    groups = build_optimizer(model, cfg2).param_groups
    assert all(g["layerwise"] and g["decays"] for g in groups)


@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs the Debian package dataset-fashion-mnist")
def test_lenet_at_batch_512_and_gamma_32_stays_bounded():
    # the case that made the old default (biases at the raw global LR) blow up: after 25
    # steps a bias norm had grown from 0.46 to 659 and the loss reached 508
    from hpcsgd.store.idx import read_idx
    from hpcsgd.models import build_model
    images = read_idx(FMNIST / "train-images-idx3-ubyte.gz")[:25 * 512]
    labels = read_idx(FMNIST / "train-labels-idx1-ubyte.gz")[:25 * 512]
    x = (torch.from_numpy(images.copy()).float()[:, None] / 255.0 - 0.286) / 0.353
    y = torch.from_numpy(labels.astype(np.int64))
    torch.manual_seed(0)
    model = build_model("lenet", num_classes=10, in_channels=1)
    opt = build_optimizer(model, OptimConfig(name="lars", base_lr=32.0, weight_decay=5e-4))
    for k in range(25):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[k * 512:(k + 1) * 512]),
                                           y[k * 512:(k + 1) * 512])
        loss.backward()
        opt.step()
    biases = [float(p.detach().norm()) for p in model.parameters() if p.ndim == 1]
    assert max(biases) < 5.0, biases
    assert loss.item() < 2.0


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    x, y = torch.randn(16, 6), torch.randn(16, 2)
    opt = build_optimizer(model, OptimConfig(name="lars", base_lr=3.0, momentum_style="caffe"))

    def train(m, o, steps):
        for _ in range(steps):
            o.zero_grad()
            ((m(x) - y) ** 2).mean().backward()
            o.step()

    train(model, opt, 5)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)                   # as the checkpoints do
    buffer.seek(0)
    clone = copy.deepcopy(model)
    opt2 = build_optimizer(clone, OptimConfig(name="lars", base_lr=0.1, momentum_style="caffe"))
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    assert opt2.param_groups[0]["lr"] == 3.0 and opt2.param_groups[0]["style"] == "caffe"
    train(model, opt, 5)
    train(clone, opt2, 5)
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="eta"):
        LARS([_param([1.0])], eta=0.0)
    with pytest.raises(ValueError, match="style"):
        LARS([_param([1.0])], style="tf")
    with pytest.raises(ConfigError, match=r"optim\.lars_eta"):
        load_config(None, ["--optim.name=lars", "--optim.lars_eta=-1"])
    with pytest.raises(ConfigError, match=r"optim\.nesterov"):
        load_config(None, ["--optim.name=lars", "--optim.nesterov=true"])
    with pytest.raises(ConfigError, match=r"optim\.lars_clip"):
        load_config(None, ["--optim.lars_clip=true"])           # clip without LARS
