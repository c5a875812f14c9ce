import pytest

from hpcsgd.config import Config, ConfigError, load_config, to_toml, validate


def _write(tmp_path, text):
    p = tmp_path / "job.toml"
    p.write_text(text)
    return p


def test_toml_then_cli_override_precedence(tmp_path):
    p = _write(tmp_path, "[optim]\nbase_lr = 0.4\nmomentum = 0.8\n[train]\nepochs = 5\n")
    cfg = load_config(p, ["--optim.base_lr=6.4", "--run.name=big", "--schedule.milestones=[1, 2]"])
    assert cfg.optim.base_lr == 6.4          # CLI beats TOML
    assert cfg.optim.momentum == 0.8         # TOML beats default
    assert cfg.train.epochs == 5.0 and isinstance(cfg.train.epochs, float)  # int accepted as float
    assert cfg.run.name == "big"             # bare word read as a string
    assert cfg.schedule.milestones == [1.0, 2.0]
    assert cfg.optim.weight_decay == Config().optim.weight_decay  # default kept


def test_saved_config_reads_back_equal(tmp_path):
    cfg = load_config(None, ["--optim.base_lr=3.2", "--train.global_batch=512"])
    again = load_config(_write(tmp_path, to_toml(cfg)))
    assert again == cfg


@pytest.mark.parametrize("text, named", [
    ("[optim]\nbase_rl = 0.1\n", "optim.base_rl"),              # unknown key
    ("[optimizer]\nbase_lr = 0.1\n", "optimizer.base_lr"),      # unknown section
    ("[train]\nglobal_batch = 25.5\n", "train.global_batch"),   # wrong type
    ("[train]\nglobal_batch = \"256\"\n", "train.global_batch"),
    ("[data]\naugment = 1\n", "data.augment"),                  # int is not a bool
    ("[optim]\nbase_lr = -1.0\n", "optim.base_lr"),             # out of range
    ("[model]\nname = \"resnet51\"\n", "model.name"),
    ("[comm]\nbackend = \"nccl\"\n", "comm.backend"),
    ("[schedule]\nwarmup_epochs = 10.0\n[train]\nepochs = 5.0\n", "schedule.warmup_epochs"),
])
def test_bad_config_is_refused_naming_the_option(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(_write(tmp_path, text))


def test_bad_cli_override_is_refused():
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(None, ["--optim.lr=0.1"])
    with pytest.raises(ConfigError, match="must look like"):
        load_config(None, ["optim.base_lr=0.1"])


def test_global_batch_must_divide_into_ranks_and_accumulation():
    cfg = load_config(None, ["--train.global_batch=96", "--train.accumulation=2"])
    validate(cfg, world_size=4)  # 96 = 4 x 2 x 12
    with pytest.raises(ConfigError, match=r"train\.global_batch = 96.*5 x 2"):
        validate(cfg, world_size=5)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")


def test_auto_precision_is_bf16_only_with_bf16_in_hardware():
    from hpcsgd.cpu.compute import native_bf16, precision
    from hpcsgd.config import ComputeConfig
    zen = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
    knl = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512pf avx512er avx512cd\n"
    spr = "flags\t: avx512f amx_tile amx_bf16 amx_int8\n"
    assert native_bf16(zen) and native_bf16(spr) and not native_bf16(knl)
    assert precision(ComputeConfig(precision="fp32")) == "fp32"
    assert precision(ComputeConfig(precision="bf16")) == "bf16"
    assert precision(ComputeConfig(precision="auto")) == ("bf16" if native_bf16() else "fp32")
    assert precision(ComputeConfig()) == "fp32"  # the default (docs/compute.md)


@pytest.mark.parametrize("name", [".", "..", "", "a/b"])
def test_run_names_that_are_not_a_folder_of_their_own_are_refused(name):
    # "." made runs share run.out_dir; ".." put the run folder (and resume=auto's search)
    # in its parent
    with pytest.raises(ConfigError, match=r"run\.name"):
        load_config(None, [f"--run.name={name}"])


def test_loading_a_config_starts_no_mpi():
    # a tool that loads a config (plotting, planning) must not initialise MPI
    import subprocess
    import sys
    code = ("import sys; from hpcsgd.config import load_config; "
            "load_config('jobs/local/fashion_mnist.toml', ['--comm.backend=gloo']); "
            "print('mpi4py.MPI' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=__file__.rsplit("/tests/", 1)[0], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_config_names_exactly_the_backends_that_exist():
    from hpcsgd.comm import BACKENDS
    from hpcsgd.config.choices import CommBackend, choices
    assert set(choices(CommBackend)) == set(BACKENDS)
