"""The hpcsgd command as a user types it (`python -m hpcsgd ...` in a subprocess): --help on
every command, one-line refusals of bad paths (exit 2, no traceback), and each data command run
on real small inputs: Fashion-MNIST's own IDX pixels, JPEGs written by Pillow, a metrics log
written by the trainer's MetricsLog, the repository's job files."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpcsgd.cli import command_lines, main
from hpcsgd.run.metrics import MetricsLog
from hpcsgd.store.datum import decode_datum
from hpcsgd.store.idx import read_idx
from hpcsgd.store.lmdb_store import LMDBReader

ROOT = Path(__file__).resolve().parents[2]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # tools/setup.sh installs it


def hpcsgd(*args, cwd=ROOT, timeout=300):
    """The command in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "hpcsgd", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def inproc(capsys, monkeypatch):
    """The same command through hpcsgd.cli.main in this process (no interpreter start-up on
    a loaded machine); an exception escaping main fails the test as a traceback would."""
    monkeypatch.chdir(ROOT)

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse: --help (0) and usage errors (2)
            code = e.code
        out = capsys.readouterr()
        return Result(code, out.out, out.err)
    return run


def _is_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_hpcsgd_help_lists_every_command_on_one_line(inproc):
    res = hpcsgd("--help")
    assert res.returncode == 0, res.stderr
    listed = [line.split()[:2] for line in res.stdout.splitlines() if line.startswith("  ")]
    for name, text in command_lines():
        line = next(line for line in res.stdout.splitlines() if line.startswith(f"  {name} "))
        assert line.endswith(text) and len(line) <= 100, line
    names = {name for name, _ in command_lines()}
    assert {"convert fashion-mnist", "convert imagenet", "plot run", "plot schedule",
            "affinity plan", "affinity tune", "affinity compare", "scaling report",
            "scaling time-to-train", "train", "lm", "ensemble"} <= names
    assert listed  # the commands section is there at all
    assert inproc().returncode == 2                     # no command: usage, exit 2
    res = inproc("convert")
    assert res.returncode == 2 and "fashion-mnist" in res.stdout
    res = inproc("plot", "nonsense")
    assert res.returncode == 2 and "invalid choice: 'nonsense'" in res.stderr


@pytest.mark.parametrize("command, options", [
    ("convert fashion-mnist", ["--source", "--out", "--val-images"]),
    ("convert imagenet", ["--src", "--out", "--splits", "--val-labels", "--resize", "--workers",
                          "--force"]),
    ("plot run", ["--out", "--x"]),
    ("plot schedule", ["--paper", "--out", "--out-dir", "--images"]),
    ("affinity", ["plan", "tune", "compare"]),
    ("affinity plan", ["--config", "--ranks", "--ranks-per-node", "--nodes", "--node-type"]),
    ("affinity tune", ["--ranks", "--rounds", "--model", "--results", "--snippet"]),
    ("affinity compare", ["--job", "--ranks", "--steps", "--rounds"]),
    ("scaling", ["report", "time-to-train", "--measurements"]),
    ("scaling report", ["--out", "--jobs"]),
    ("scaling time-to-train", ["--job", "--node-type", "--nodes", "--local-batch", "--epochs"]),
    ("ensemble", ["--snapshots"]),
])
def test_every_command_has_help_naming_its_options(inproc, command, options):
    res = inproc(*command.split(), "--help")
    assert res.returncode == 0, res.stderr
    assert f"usage: hpcsgd {command}" in res.stdout or command == "ensemble"
    for option in options:
        assert option in res.stdout, (command, option)


@pytest.mark.parametrize("args, named", [
    (["convert", "fashion-mnist", "--source", "/no/such/idx", "--out", "{tmp}/o"], "/no/such/idx"),
    (["convert", "imagenet", "--src", "/no/such/imagenet", "--out", "{tmp}/o"],
     "/no/such/imagenet/train"),
    (["plot", "run", "/no/such/run"], "/no/such/run/metrics.jsonl"),
    (["plot", "schedule", "/no/such/job.toml", "--out", "{tmp}/s.png"], "/no/such/job.toml"),
    (["affinity", "plan", "--config", "/no/such/job.toml"], "/no/such/job.toml"),
    (["affinity", "compare", "--job", "/no/such/job.toml"], "/no/such/job.toml"),
    (["scaling", "time-to-train", "--job", "/no/such/job.toml"], "/no/such/job.toml"),
    (["scaling", "report", "--jobs", "/no/such/jobs", "--out", "{tmp}/s.md"], "/no/such/jobs"),
    (["scaling", "--measurements", "/no/such/m.json", "time-to-train", "--node-type",
      "knl-7250", "--nodes", "2", "--local-batch", "32", "--epochs", "1"], "/no/such/m.json"),
])
def test_a_bad_path_is_one_line_and_exit_2(inproc, tmp_path, args, named):
    res = inproc(*(a.format(tmp=tmp_path) for a in args))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], res.stderr
    assert lines[0].startswith("hpcsgd " + " ".join(a for a in args[:2]
                                                   if not a.startswith("-")))
    assert not (tmp_path / "o").exists()                # refused before writing anything


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Fashion-MNIST not installed")
def test_convert_fashion_mnist_on_its_own_pixels(tmp_path):
    # the first 300 training and 40 test images of the real data set, as IDX files again
    src = tmp_path / "idx"
    src.mkdir()
    real = {}
    for prefix, n in (("train", 300), ("t10k", 40)):
        for kind in ("images-idx3", "labels-idx1"):
            real[prefix, kind] = read_idx(FASHION_MNIST / f"{prefix}-{kind}-ubyte.gz")[:n]
            _write_idx(src / f"{prefix}-{kind}-ubyte.gz", real[prefix, kind])
    res = hpcsgd("convert", "fashion-mnist", "--source", src, "--out", tmp_path / "out",
                 "--val-images", 60)
    assert res.returncode == 0, res.stderr
    assert f"{tmp_path / 'out' / 'fit'}: wrote 240 records" in res.stdout
    counts = {s: len(LMDBReader(tmp_path / "out" / s)) for s in ("train", "test", "fit", "val")}
    assert counts == {"train": 300, "test": 40, "fit": 240, "val": 60}
    test = LMDBReader(tmp_path / "out" / "test")
    records = [decode_datum(r) for r in test.get_many(range(40))]
    assert [d.label for d in records] == list(real["t10k", "labels-idx1"])
    assert all(np.array_equal(np.frombuffer(d.data, np.uint8).reshape(28, 28), img)
               for d, img in zip(records, real["t10k", "images-idx3"]))
    again = hpcsgd("convert", "fashion-mnist", "--source", src, "--out", tmp_path / "out")
    assert again.stdout.count("already converted") == 4
    # too few images for the held-out split: one line naming the option
    res = hpcsgd("convert", "fashion-mnist", "--source", src, "--out", tmp_path / "o2")
    assert res.returncode == 2 and "--val-images" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_convert_imagenet_on_pillow_jpegs(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for wnid, n in (("n02000000", 3), ("n01000000", 2)):
        for split in ("train", "val"):
            folder = src / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=85)
    res = hpcsgd("convert", "imagenet", "--src", src, "--out", tmp_path / "out",
                 "--workers", 1)
    assert res.returncode == 0, res.stderr
    assert "train: wrote 5 records" in res.stdout and "val: wrote 5 records" in res.stdout
    train = LMDBReader(tmp_path / "out" / "train")
    assert (train.path / "classes.txt").read_text().split() == ["n01000000", "n02000000"]
    summary = json.loads((train.path / "summary.json").read_text())
    assert summary["per_class"] == {"n01000000": 2, "n02000000": 3} and not summary["skipped"]
    records = [decode_datum(r) for r in train.get_many(range(5))]
    assert [d.label for d in records] == [0, 0, 1, 1, 1]
    first = (src / "train" / "n01000000" / "n01000000_0.JPEG").read_bytes()
    assert records[0].data == first and (records[0].height, records[0].width) == (48, 64)
    # a flat val/ without --val-labels: refused in one line before writing
    flat = tmp_path / "flat"
    (flat / "train" / "n0").mkdir(parents=True)
    (flat / "val").mkdir()
    (flat / "train" / "n0" / "a.JPEG").write_bytes(first)
    res = hpcsgd("convert", "imagenet", "--src", flat, "--out", tmp_path / "out2")
    assert res.returncode == 2 and "give --val-labels FILE" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out2").exists()             # not even train/ was written


def test_plot_run_draws_a_metrics_log(tmp_path):
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    log = MetricsLog(run / "metrics.jsonl")  # the trainer's own writer
    for step in range(1, 9):
        log.write("train", step=step, epoch=step / 4, loss=2.3 / step, lr=0.1,
                  img_per_s=1000.0 + step, data_s=0.01, compute_s=0.05, comm_s=0.02)
    log.write("eval", step=8, epoch=2.0, top1=0.5, top5=0.9)
    log.file.close()
    res = hpcsgd("plot", "run", run, "--out", tmp_path / "curves.png", "--x", "epoch")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "curves.png")
    width, height = _is_png(tmp_path / "curves.png")
    assert width > 500 and height > 500


def test_plot_schedule_of_a_job_and_of_a_paper(inproc, tmp_path):
    res = inproc("plot", "schedule", "jobs/local/fashion_mnist.toml", "--out", tmp_path / "fm.png",
                 "--train.epochs=4")
    assert res.returncode == 0, res.stderr
    assert "fashion_mnist: peak LR 0.1" in res.stdout
    _is_png(tmp_path / "fm.png")
    res = inproc("plot", "schedule", "--paper", "codreanu-fig4", "--out-dir", tmp_path)
    assert res.returncode == 0, res.stderr
    _is_png(tmp_path / "schedules_codreanu_fig4.png")
    res = inproc("plot", "schedule", "jobs/local/fashion_mnist.toml", "--out", tmp_path / "x.png",
                 "--schedule.decay=wavy")
    assert res.returncode == 2 and "schedule.decay" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_scaling_report_regenerates_the_committed_document(inproc, tmp_path):
    res = inproc("scaling", "report", "--out", tmp_path / "scaling.md")
    assert res.returncode == 0, res.stderr
    # docs/scaling.md is generated: the command reproduces it byte for byte
    assert (tmp_path / "scaling.md").read_text() == (ROOT / "docs" / "scaling.md").read_text()
    _is_png(tmp_path / "scaling_time_per_epoch.png")
    _is_png(tmp_path / "scaling_efficiency.png")


def test_scaling_time_to_train_of_a_job_and_of_parameters(inproc):
    job = "jobs/stampede2/tableii_row1_b8192_n256_e90.toml"
    res = inproc("scaling", "time-to-train", "--job", job)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["job"] == job and out["nodes"] == 256 and out["local_batch"] == 32
    assert 60 < out["total_min"] < 600                   # the paper: 140 min
    same = json.loads(inproc("scaling", "ttt", "--node-type", "knl-7250", "--nodes", 256,
                             "--local-batch", 32, "--epochs", out["epochs"],
                             "--evaluations", out["evaluations"]).stdout)
    assert same["total_s"] == pytest.approx(out["total_s"])
    res = inproc("scaling", "time-to-train", "--nodes", 4)
    assert res.returncode == 2
    assert res.stderr.strip() == ("hpcsgd scaling time-to-train: error: give --job, or also "
                                  "--node-type, --local-batch, --epochs")
