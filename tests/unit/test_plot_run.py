"""hpcsgd plot run (hpcsgd/plot/run.py) on real run folders: two short trainings (1-rank world) on a tiny LMDB in
Fashion-MNIST's record format (28 x 28 grey, 10 classes; tests/helpers.tiny_dataset, because
data/ is not in git), plotted alone and overlaid; bad folders refused with exit 2."""
import math
from pathlib import Path

import pytest
from mpi4py import MPI
from PIL import Image

from hpcsgd.plot import run as tool
from hpcsgd.run.metrics import MetricsLog, read_metrics
from hpcsgd.train import train
from hpcsgd.run.world import init_world
from helpers import tiny_config, tiny_dataset



@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real run folders: 8 steps of LeNet each, logged every 2 steps, evaluated twice."""
    root = tmp_path_factory.mktemp("plot_run")
    tiny_dataset(root / "data")
    world = init_world(MPI.COMM_SELF)
    folders = []
    for name, lr in (("slow", 0.01), ("fast", 0.05)):
        cfg = tiny_config(root / "data", root / "runs", run={"name": name},
                          optim={"base_lr": lr}, compute={"threads": 1},
                          train={"epochs": 1.0, "log_every_steps": 2, "eval_every_epochs": 0.5})
        train(cfg, world)
        folders.append(cfg.run_dir)
    return folders


def _is_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()  # decodes the chunk structure: a truncated or non-PNG file raises
        assert im.format == "PNG"
        return im.size


def test_one_run_draws_a_png_and_prints_its_path(runs, tmp_path, capsys):
    out = tmp_path / "sub" / "one.png"
    assert tool.main([str(runs[0]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    width, height = _is_png(out)
    assert 800 <= width <= 3000 and 600 <= height <= 3000


def test_two_runs_overlay_with_a_legend_naming_each(runs, capsys):
    assert tool.main([str(runs[0]), str(runs[1]), "--x", "epoch"]) == 0
    # beside the runs, named after both, not inside the first run's folder
    out = runs[0].parent.resolve() / f"curves_{runs[0].name}+{runs[1].name}.png"
    assert capsys.readouterr().out.strip() == str(out)
    _is_png(out)
    fig = tool.figure([tool.load_run(f) for f in runs], x="epoch")
    loss, acc = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in loss.get_legend().get_texts()] == \
        ["slow (smoothed)", "fast (smoothed)"]
    assert {"slow top-1", "fast top-5"} <= {t.get_text() for t in acc.get_legend().get_texts()}
    # eval points at epochs 0.5 and 1.0, read from the eval records
    assert list(acc.lines[0].get_xdata()) == [0.5, 1.0]
    titles = [ax.get_title() for ax in fig.axes]
    assert "phase times: slow" in titles and "phase times: fast" in titles
    tool.plt.close(fig)


def test_a_missing_folder_exits_2_naming_the_path(tmp_path, capsys):
    folder = tmp_path / "no_run"
    assert tool.main([str(folder)]) == 2
    assert str(folder / "metrics.jsonl") in capsys.readouterr().err


def test_a_log_without_train_records_exits_2_naming_the_path(runs, tmp_path, capsys):
    folder = tmp_path / "empty_run"
    folder.mkdir()
    log = MetricsLog(folder / "metrics.jsonl")
    log.write("start", ranks=1, step=0)
    log.write("eval", step=4, epoch=0.5, top1=0.3, top5=0.8, count=200)
    log.close()
    # refused even after a good folder: nothing is drawn
    assert tool.main([str(runs[0]), str(folder), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert str(folder / "metrics.jsonl") in err and "no 'train' records" in err
    assert not (tmp_path / "x.png").exists()
    (folder / "metrics.jsonl").write_text('{"tag": "train", "step": 1\n')  # cut-off line
    assert tool.main([str(folder)]) == 2
    assert str(folder / "metrics.jsonl") in capsys.readouterr().err


def test_phase_fractions_of_the_real_log_sum_to_one_without_rates(runs):
    records = read_metrics(runs[0] / "metrics.jsonl", "train")
    assert len(records) == 4 and all("img_per_s" in r for r in records)
    fractions = tool.phase_fractions(records)
    assert "img_per_s" not in fractions and {"data_s", "comm_s"} <= set(fractions)
    for i in range(len(records)):
        assert math.isclose(sum(f[i] for f in fractions.values()), 1.0, rel_tol=1e-9)


def test_phase_fractions_take_any_phase_and_ignore_rates():
    # compute_s before, forward_s + backward_s after a trainer change; img_per_s is a rate
    records = [{"data_s": 1.0, "compute_s": 3.0, "img_per_s": 500.0, "loss": 2.0},
               {"data_s": 1.0, "forward_s": 1.0, "backward_s": 2.0, "img_per_s": 9.0},
               {"data_s": 0.0, "tok_per_s": 4.0}]
    assert tool.phase_fractions(records) == {
        "data_s":     [0.25, 0.25, 0.0],   # a record with no phase time: all 0
        "compute_s":  [0.75, 0.0, 0.0],
        "forward_s":  [0.0, 0.25, 0.0],
        "backward_s": [0.0, 0.5, 0.0]}


def test_weight_decay_and_split_compute_phases_are_drawn(tmp_path):
    # the trainer's coming fields: weight_decay, forward_s/backward_s instead of compute_s
    folder = tmp_path / "new_fields"
    folder.mkdir()
    log = MetricsLog(folder / "metrics.jsonl")
    for step in (2, 4, 6):
        log.write("train", step=step, epoch=step / 8, loss=2.0 / step, lr=0.1, weight_decay=5e-4,
                  img_per_s=900.0, data_s=0.1, forward_s=0.2, backward_s=0.5, comm_s=0.2)
    log.write("epoch", epoch=1, loss=0.4)  # a tag the plot does not know: ignored
    log.close()
    assert tool.main([str(folder)]) == 0
    _is_png(folder / "curves.png")
    fig = tool.figure([tool.load_run(folder)])
    twin = [ax for ax in fig.axes if ax.get_ylabel() == "weight decay (dashed)"]
    assert len(twin) == 1 and list(twin[0].lines[0].get_ydata()) == [5e-4] * 3
    phase_ax = next(ax for ax in fig.axes if ax.get_title() == "phase times: new_fields")
    assert [t.get_text() for t in phase_ax.get_legend().get_texts()] == \
        ["data", "forward", "backward", "comm"]
    tool.plt.close(fig)


def test_smooth_and_resumed_logs():
    assert tool.smooth([1.0, math.nan, 3.0, 5.0], window=3) == [1.0, 2.0, 4.0, 4.0]
    # crashed after step 3, resumed from step 1's checkpoint: steps 2-3 logged again and
    # the later lines count
    log = [{"step": s, "loss": v} for s, v in ((1, 9.0), (2, 8.0), (3, 7.0), (2, 6.0),
                                                (3, 5.0), (4, 4.0))]
    assert [r["loss"] for r in tool.last_per_step(log)] == [9.0, 6.0, 5.0, 4.0]


def test_one_step_runs_a_constant_weight_decay_and_an_odd_number_of_runs(tmp_path):
    folder = tmp_path / "one_step"
    folder.mkdir()
    log = MetricsLog(folder / "metrics.jsonl")
    log.write("train", step=1, epoch=0.1, loss=2.3, lr=0.1, weight_decay=5e-4,
              img_per_s=900.0, data_s=0.1, forward_s=0.2)
    log.close()
    fig = tool.figure([tool.load_run(folder)])
    loss = fig.axes[0]
    assert loss.lines[1].get_marker() == "o"            # the one point is drawn
    twin = next(ax for ax in fig.axes if ax.get_ylabel() == "weight decay (dashed)")
    assert list(twin.get_yticks()) == [0, 5e-4, 1e-3]    # constant: 0, v, 2v
    phase_ax = next(ax for ax in fig.axes if ax.get_title() == "phase times: one_step")
    assert phase_ax.get_subplotspec().colspan.stop - phase_ax.get_subplotspec().colspan.start == 2
    assert all(ax.axison for ax in fig.axes)              # no empty, switched-off panel
    tool.plt.close(fig)


def test_a_run_started_again_in_its_folder_is_plotted_from_its_new_start(tmp_path):
    # resume=auto with no checkpoint yet (a job killed in its first epoch) starts again from
    # step 0 in the same folder: the old process's steps past the new one's must not show
    folder = tmp_path / "again"
    folder.mkdir()
    log = MetricsLog(folder / "metrics.jsonl")
    for start, losses in ((None, (9.0, 8.0, 7.0)), (None, (6.0,))):
        log.write("start", ranks=1, step=0, resumed_from=start)
        for s, v in enumerate(losses, 1):
            log.write("train", step=s, epoch=s / 4, loss=v, lr=0.1, img_per_s=1.0)
    log.close()
    assert [r["loss"] for r in tool.load_run(folder)["train"]] == [6.0]
