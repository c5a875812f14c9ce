"""The metrics log: JSON lines, and the same numbers as TensorBoard scalars (the tensorboard
package is in the test extra, so the event files are read back here for real)."""
import math

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hpcsgd.run.metrics import MetricsLog, read_metrics


def test_train_epoch_and_eval_numbers_become_tensorboard_scalars(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tb")
    log.write("start", ranks=4, step=0)  # not mirrored
    for step in (1, 2, 3):
        log.write("train", step=step, loss=1.0 / step, lr=0.1 * step, img_per_s=100.0 + step,
                  forward_s=0.5, note="text", flag=True, bad=math.nan)
    log.write("eval", step=3, top1=0.75, top5=0.97, count=200)
    log.write("epoch", epoch=1, step=3, loss=None, img_per_s=101.0)
    log.close()

    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl", "train")] == [1, 2, 3]
    board = EventAccumulator(str(tmp_path / "tb"))
    board.Reload()
    scalars = set(board.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/img_per_s", "train/forward_s", "eval/top1",
            "eval/top5", "epoch/img_per_s", "epoch/epoch"} <= scalars
    # text, booleans, NaN, None and the start record are not scalars
    assert not {"train/note", "train/flag", "train/bad", "epoch/loss", "start/ranks"} & scalars
    loss = [(e.step, round(e.value, 6)) for e in board.Scalars("train/loss")]
    assert loss == [(1, 1.0), (2, 0.5), (3, round(1 / 3, 6))]
    assert [(e.step, e.value) for e in board.Scalars("eval/top1")] == [(3, 0.75)]


def test_other_ranks_and_runs_without_a_board_write_no_event_files(tmp_path):
    silent = MetricsLog(None, tmp_path / "tb_rank1")  # a rank other than 0
    silent.write("train", step=1, loss=1.0)
    silent.close()
    plain = MetricsLog(tmp_path / "metrics.jsonl", None)  # run.tensorboard = false
    plain.write("train", step=1, loss=1.0)
    plain.close()
    assert not (tmp_path / "tb_rank1").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_a_resumed_run_replaces_the_steps_after_its_checkpoint(tmp_path):
    first = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tb")
    for step in (1, 2, 3, 4):
        first.write("train", step=step, loss=float(step))
    first.close()  # "crash" after step 4; the checkpoint was at step 2
    second = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tb")
    second.resumed_at(3)
    for step in (3, 4, 5):
        second.write("train", step=step, loss=10.0 + step)
    second.close()
    board = EventAccumulator(str(tmp_path / "tb"))
    board.Reload()
    assert [(e.step, e.value) for e in board.Scalars("train/loss")] == \
        [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0), (5, 15.0)]
