"""Choice options are typed once (hpcsgd/config/choices.py): the coercion and validate refuse
any other word, naming the option and every choice; every word of a choice actually runs;
--help lists the words; a refusal says what to set."""
import dataclasses
import math
import subprocess
import sys
import typing

import pytest
import torch

from hpcsgd.config import Config, ConfigError, load_config, validate
from hpcsgd.config.choices import Decay, LRScaling, MomentumStyle, OptimName, Warmup, choices, is_choice
from hpcsgd.optim.build import build_optimizer
from hpcsgd.schedule.plan import build_schedule


def _choice_options():
    for section in dataclasses.fields(Config):
        for key, typ in typing.get_type_hints(section.default_factory).items():
            if is_choice(typ):
                yield section.name, key, choices(typ)


CHOICES = list(_choice_options())


def test_the_choice_options_are_the_ones_with_fixed_words():
    names = {f"{s}.{k}" for s, k, _ in CHOICES}
    assert {"optim.name", "schedule.decay", "comm.backend", "train.nonfinite",
            "compute.precision", "lm.eval_split"} <= names and len(names) >= 15
    # installed or open-ended sets stay plain strings, checked by their section
    assert not names & {"model.name", "cluster.node_type", "compute.allocator"}


@pytest.mark.parametrize("section, key, words", CHOICES, ids=[f"{s}.{k}" for s, k, _ in CHOICES])
def test_a_word_outside_the_choices_is_refused_naming_the_option_and_every_word(section, key,
                                                                                words):
    option = f"{section}.{key}"
    with pytest.raises(ConfigError) as refused:
        load_config(None, [f"--{option}=bogus"])
    message = str(refused.value)
    assert message.startswith(f"{option} = 'bogus': must be one of")
    assert all(repr(w) in message for w in words)
    cfg = Config()  # a tree built in Python skips the coercion: validate refuses it as well
    setattr(getattr(cfg, section), key, "bogus")
    with pytest.raises(ConfigError, match=f"^{option} = 'bogus'"):
        validate(cfg)


@pytest.mark.parametrize("decay", choices(Decay))
@pytest.mark.parametrize("warmup", choices(Warmup))
def test_every_decay_and_warmup_word_gives_a_schedule(decay, warmup):
    epochs = 120 if decay == "cyclic" else 10
    cfg = load_config(None, [f"--schedule.decay={decay}", f"--schedule.warmup={warmup}",
                             f"--train.epochs={epochs}", "--schedule.warmup_epochs=2",
                             "--schedule.warmup_start_lr=0.01"])
    schedule = build_schedule(cfg, steps_per_epoch=10)
    lrs = [schedule.at(e).lr for e in (0.5, 3.0, epochs / 2)]
    assert all(math.isfinite(lr) and lr > 0 for lr in lrs)


@pytest.mark.parametrize("rule", choices(LRScaling))
def test_every_scaling_word_scales_as_named(rule):
    cfg = load_config(None, [f"--schedule.lr_scaling={rule}", "--schedule.base_batch=64",
                             "--train.global_batch=256", "--optim.base_lr=0.1",
                             "--schedule.decay=constant"])
    expected = {"none": 0.1, "linear": 0.4, "sqrt": 0.2}[rule]
    assert build_schedule(cfg).at(1.0).lr == pytest.approx(expected)


@pytest.mark.parametrize("name", choices(OptimName))
@pytest.mark.parametrize("style", choices(MomentumStyle))
def test_every_optimizer_word_builds_an_optimizer_that_steps(name, style):
    cfg = load_config(None, [f"--optim.name={name}", f"--optim.momentum_style={style}"])
    model = torch.nn.Linear(4, 3)
    before = model.weight.detach().clone()
    optimizer = build_optimizer(model, cfg.optim)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight)


def test_help_lists_a_choice_option_by_its_words():
    out = subprocess.run([sys.executable, "-m", "hpcsgd", "train", "--help", "schedule"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(poly | cosine | multistep | constant | roller_coaster | cyclic)" in out.stdout
    assert "(list of float)" in out.stdout


def test_a_too_long_legw_warmup_names_the_value_to_set():
    legw = ["--train.epochs=10", "--train.global_batch=1024", "--schedule.base_batch=256",
            "--schedule.legw=true"]  # warmup epochs x 4
    with pytest.raises(ConfigError, match=r"set --schedule\.warmup_epochs below 2\.5 "):
        load_config(None, legw + ["--schedule.warmup_epochs=3"])
    with pytest.raises(ConfigError, match=r"warmup_epochs below 2\.5 "):
        load_config(None, legw + ["--schedule.warmup_epochs=2.5"])
    assert load_config(None, legw + ["--schedule.warmup_epochs=2.4"])  # the advice works


def test_an_on_off_choice_reads_true_and_false_and_other_choices_do_not():
    # configs written when compute.compile was a bool (true/false) still load
    cfg = load_config(None, ["--compute.compile=true", "--comm.hierarchical=false"])
    assert (cfg.compute.compile, cfg.comm.hierarchical) == ("on", "off")
    with pytest.raises(ConfigError, match="^compute.precision = True"):
        load_config(None, ["--compute.precision=true"])
