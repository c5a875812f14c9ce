"""Every job config against its row of Codreanu et al.'s tables (../shared/papers/001_*.txt):
global batch = nodes x ranks per node x local batch x accumulation, and the iterations the
trainer will run = the row's printed iterations, x batch / 1,281,167 = the row's epochs (within
the paper's rounding); the recipes of Tables VIII and IX;
the Slurm scripts consistent with their configs; the generated files up to date."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpcsgd.config import load_config
from hpcsgd.data.sharding import steps_per_epoch

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "jobs"
IMAGES = 1_281_167
# The papers' rounding: epochs are printed as integers, iterations to 2-4 significant digits;
# the largest honest gap is Table IX's 32K row (4000 iterations printed, 100 epochs = 3910).
TOLERANCE = 0.025

# (table, row): (batch, nodes or CPUs, iterations, epochs), transcribed from the paper;
# MareNostrum 4 (Table VII) counts CPUs, two per node.
PAPER = {
    ("ii", 1): (8192, 256, 14200, 90), ("ii", 2): (12288, 512, 9400, 90),
    ("ii", 3): (11520, 720, 10000, 90),
    ("iii", 1): (4096, 256, 11560, 37), ("iii", 2): (8192, 256, 7800, 50),
    ("iii", 3): (8192, 512, 7800, 50), ("iii", 4): (12288, 512, 5600, 54),
    ("iii", 5): (12288, 768, 11560, 37),
    ("iv", 1): (2048, 256, 18120, 29), ("iv", 2): (4096, 256, 11560, 37),
    ("iv", 3): (8192, 256, 4530, 29), ("iv", 4): (8192, 256, 5780, 37),
    ("iv", 5): (8192, 512, 5780, 37),
    ("vii", 1): (8192, 512, 7800, 50), ("vii", 2): (9600, 800, 8000, 60),
    ("vii", 3): (6400, 800, 10000, 50), ("vii", 4): (6400, 800, 15000, 75),
    ("vii", 5): (8192, 1024, 10000, 64), ("vii", 6): (8192, 1024, 7800, 50),
    # Table VIII: 128 VLAB KNL nodes, batch 4096; no iterations or epochs published (90 assumed)
    ("viii", 1): (4096, 128, None, 90), ("viii", 2): (4096, 128, None, 90),
    ("viii", 3): (4096, 128, None, 90),
    ("ix", 1): (10240, 512, 11400, 91), ("ix", 2): (16384, 512, 7200, 92),
    ("ix", 3): (32768, 1024, 4000, 100), ("ix", 4): (49152, 1536, 2600, 100),
    ("ix", 5): (65536, 128, 2100, 107),
}
# 11560 iterations x 12288 images = 111 epochs, not the printed 37 (the row repeats Table
# III row 1's iteration count); the job follows the epochs.
INCONSISTENT = {("iii", 5)}


def _jobs():
    return sorted(p for site in ("stampede2", "marenostrum4") for p in (JOBS / site).glob("*.toml"))


def _row(path: Path):
    m = re.match(r"table([ivx]+)_row(\d+)_", path.name)
    assert m, f"{path.name}: not named table<N>_row<M>_..."
    return m.group(1), int(m.group(2))


def test_every_table_row_has_exactly_one_job():
    rows = [_row(p) for p in _jobs()]
    assert sorted(rows) == sorted(PAPER), set(rows) ^ set(PAPER)


def test_every_toml_under_jobs_loads_and_validates():
    paths = sorted(JOBS.rglob("*.toml"))
    assert len(paths) >= len(PAPER) + 1
    for path in paths:
        load_config(path)  # raises ConfigError naming the option


@pytest.mark.parametrize("path", _jobs(), ids=lambda p: p.stem)
def test_job_matches_its_table_row(path):
    key = _row(path)
    batch, units, iterations, epochs = PAPER[key]
    cfg = load_config(path)
    c, t = cfg.cluster, cfg.train
    mn4 = path.parent.name == "marenostrum4"
    assert c.node_type == ("skx-8160" if mn4 else "knl-7250")
    assert c.nodes == (units // 2 if mn4 else units)
    assert c.ranks_per_node == 1
    assert t.global_batch == batch
    ranks = c.nodes * c.ranks_per_node
    local = t.global_batch // (ranks * t.accumulation)
    assert c.nodes * c.ranks_per_node * local * t.accumulation == t.global_batch
    # the iterations the trainer will run (hpcsgd/train.py: round(epochs x steps per epoch))
    ours = max(1, round(t.epochs * steps_per_epoch(IMAGES, t.global_batch)))
    assert abs(ours * batch / IMAGES - epochs) <= TOLERANCE * epochs
    if iterations is None or key in INCONSISTENT:
        assert ours == round(epochs * IMAGES / batch)  # the row's epochs' worth
    else:
        # the paper's own rows: printed iterations x batch / images = printed epochs
        assert abs(iterations * batch / IMAGES - epochs) <= TOLERANCE * epochs
        assert ours == iterations  # the job makes the paper's number of SGD updates
    if key in INCONSISTENT:
        assert abs(iterations * batch / IMAGES - epochs) > 0.5 * epochs  # still contradictory
    assert cfg.data.name == "imagenet" and cfg.model.name == "resnet50"
    assert cfg.model.num_classes == 1000 and cfg.model.bn_momentum == 0.05
    # Intel's VLAB nodes ran Flat-Quadrant (MCDRAM a NUMA node of its own): prefer it there;
    # Stampede2 (Cache mode) and MareNostrum 4 have nothing to choose
    vlab = "VLAB" in path.read_text()
    assert c.memory == ("hbm" if vlab else "default"), path.name


def test_local_batches_the_text_states():
    def local(name):
        (path,) = [p for p in _jobs() if p.name.startswith(name)]
        cfg = load_config(path)
        return cfg.train.global_batch // (cfg.cluster.nodes * cfg.cluster.ranks_per_node
                                          * cfg.train.accumulation)
    assert local("tableii_row3") == 16     # V-A1: "16 in the 720 node case"
    assert local("tableix_row4") == 32     # V-A: 1536 nodes, local batch 32
    assert local("tableix_row5") == 512    # V-C: 128 nodes, local batch 512
    assert local("tablevii_row1") == 32    # Table VI: local batch 32 on 512 CPUs
    assert local("tablevii_row6") == 16    # "the 512-node, 16 batch size per node experiment"


def _cfg(prefix):
    (path,) = [p for p in _jobs() if p.name.startswith(prefix)]
    return load_config(path)


def test_recipes_follow_the_text():
    for path in _jobs():
        table, _ = _row(path)
        cfg = load_config(path)
        o, s = cfg.optim, cfg.schedule
        assert (o.name, o.momentum, s.decay, s.power) == ("sgd", 0.9, "poly", 1.0)
        if table in ("ii", "iii", "iv", "vii"):  # V-A: none of V-B / VI's techniques
            assert o.weight_decay == 1e-4 and s.collapse_epochs == s.collapse_fraction == 0
            assert (s.lr_scaling, s.base_batch, o.base_lr, s.warmup_epochs) == ("linear", 256, 0.1, 5)
    viii = [_cfg(f"tableviii_row{i}") for i in (1, 2, 3)]
    assert [c.optim.weight_decay for c in viii] == [1e-4, 5e-5, 5e-5]
    assert [c.schedule.collapse_epochs > 0 for c in viii] == [False, False, True]
    assert viii[2].optim.weight_decay * viii[2].schedule.collapse_wd_factor == pytest.approx(1e-4)
    for i in range(1, 6):  # V-C: every very-large-batch run collapses, from half weight decay
        cfg = _cfg(f"tableix_row{i}")
        assert cfg.optim.weight_decay == 5e-5 and cfg.schedule.collapse_epochs > 0
        top = cfg.optim.weight_decay * cfg.schedule.collapse_wd_factor
        if cfg.schedule.wd_values:
            top = cfg.schedule.wd_values[-1] * cfg.schedule.collapse_wd_factor
        assert top == pytest.approx(1e-4)
        assert 0.05 <= cfg.schedule.collapse_epochs / cfg.train.epochs <= 0.07  # "last 5-7%"
        if cfg.train.global_batch >= 16384:  # LR kept at 6.4, warmup "around 7-10 epochs"
            assert (cfg.optim.base_lr, cfg.schedule.lr_scaling) == (6.4, "none")
            assert 7 <= cfg.schedule.warmup_epochs <= 10
    assert _cfg("tableiii_row1").train.target_top1 == 0.74


@pytest.mark.parametrize("path", _jobs(), ids=lambda p: p.stem)
def test_slurm_script_matches_its_config(path):
    cfg = load_config(path)
    script = path.with_suffix(".sbatch")
    text = script.read_text()
    lines = text.splitlines()
    rel = script.relative_to(ROOT)
    assert lines[0] == "#!/bin/bash" and lines[1].startswith(f"# sbatch {rel} ")
    directives = dict(re.findall(r"^#SBATCH --([a-z-]+)(?:=(\S+))?", text, re.M))
    assert int(directives["nodes"]) == cfg.cluster.nodes
    assert int(directives["ntasks-per-node"]) == cfg.cluster.ranks_per_node
    assert re.fullmatch(r"B:USR1@\d+", directives["signal"])
    assert "requeue" in directives
    assert f'jobs/slurm/run.sh" {path.relative_to(ROOT)} "$@"' in lines[-1]
    assert script.stat().st_mode & 0o111


def test_scaling_model_reads_every_job():
    from hpcsgd.scaling.jobs import read_job
    for path in _jobs():
        job = read_job(path)
        cfg = load_config(path)
        assert (job.node_type, job.nodes, job.global_batch) == (
            cfg.cluster.node_type, cfg.cluster.nodes, cfg.train.global_batch)


def test_generated_files_are_up_to_date(tmp_path):
    spec = importlib.util.spec_from_file_location("make_jobs", JOBS / "make_jobs.py")
    make_jobs = importlib.util.module_from_spec(spec)
    sys.modules["make_jobs"] = make_jobs  # dataclasses look their module up while defined
    try:
        spec.loader.exec_module(make_jobs)
    finally:
        del sys.modules["make_jobs"]
    written = make_jobs.write_all(tmp_path)
    assert len(written) == 2 * len(PAPER) + 1
    for path in written:
        committed = JOBS / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), f"{committed}: run jobs/make_jobs.py"


@pytest.mark.parametrize("version,expected", [
    ("mpirun (Open MPI) 5.0.3", "-n 512 --bind-to none --npernode 2 "),
    ("HYDRA build details:\n    Version: 4.2.0", "-n 512 -ppn 2 "),
])
def test_mpirun_script_never_lets_the_launcher_narrow_a_rank(tmp_path, version, expected):
    # Open MPI binds each rank to a core or socket by default, and hpcsgd would then plan
    # inside that slice: the generic script must turn binding off there
    fake = tmp_path / "mpirun"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then printf "{version}\\n"; '
                    'else printf "%s\\n" "$*"; fi\n')
    fake.chmod(0o755)
    job = tmp_path / "job.toml"
    job.write_text("[cluster]\nnodes = 256\nranks_per_node = 2\n")
    out = subprocess.run([str(ROOT / "jobs" / "mpirun.sh"), str(job), "--train.epochs=1"],
                         env={**os.environ, "MPIRUN": str(fake)}, capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith(expected), out
    assert out.rstrip().endswith(f"{job} --checkpoint.resume=auto --train.epochs=1")
