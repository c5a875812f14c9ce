"""compute.compile: what "auto", "on" and "off" mean for a run (hpcsgd/cpu/compute.py), and
where Inductor's cache goes. Pure: no compilation here (tools/bench_compute.py --compile
measures it)."""
from pathlib import Path

from hpcsgd.config import ComputeConfig
from hpcsgd.cpu.compute import compile_choice

RUN = Path("/runs/r")


def test_auto_compiles_only_a_measured_model_and_precision_in_a_long_run(monkeypatch):
    from hpcsgd.cpu import compute
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    auto = ComputeConfig(compile="auto", compile_min_steps=1000, precision="fp32")
    # as measured (docs/compute.md): compiling paid nowhere with tcmalloc, so auto never does
    assert not compile_choice(auto, "resnet50", 10**6, RUN).on
    # the rule, for a pair that a measurement would add
    monkeypatch.setattr(compute, "COMPILE_PAYS", frozenset({("resnet50", "fp32")}))
    on = compile_choice(auto, "resnet50", 1000, RUN)
    assert on.on and on.cache == str(RUN / "compile-cache") and "auto" in on.why
    short = compile_choice(auto, "resnet50", 999, RUN)
    assert not short.on and "999 steps < compute.compile_min_steps = 1000" in short.why
    # another model or precision is not compiled, however long the run
    assert not compile_choice(auto, "lenet", 10**6, RUN).on
    assert not compile_choice(auto, "lstm_lm", 10**6, RUN).on
    bf16 = ComputeConfig(compile="auto", precision="bf16")
    assert not compile_choice(bf16, "resnet50", 10**6, RUN).on


def test_on_and_off_are_obeyed_and_the_cache_folder_is_chosen_in_order(monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert compile_choice(ComputeConfig(compile="on"), "lenet", 1, RUN).on
    assert not compile_choice(ComputeConfig(compile="off"), "resnet50", 10**6, RUN).on
    # the option, then the user's environment, then the run folder (found again on requeue)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/scratch/inductor")
    assert compile_choice(ComputeConfig(compile="on"), "lenet", 1, RUN).cache == \
        "/scratch/inductor"
    assert compile_choice(ComputeConfig(compile="on", compile_cache="/c"), "lenet", 1,
                          RUN).cache == "/c"
