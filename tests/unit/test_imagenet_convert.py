import json
import subprocess
import sys

from hpcsgd.store.lmdb_store import LMDBReader
from hpcsgd.store.datum import decode_datum
from imagenet_helpers import sample_jpegs


def test_converter_writes_caffe_records_classes_and_summary(tmp_path):
    src = tmp_path / "src"
    jpegs = sample_jpegs(9, seed=5)
    for i, (data, _) in enumerate(jpegs[:6]):  # two classes of three, given unsorted
        folder = src / "train" / ("n02000000" if i % 2 else "n01000000")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{i}.JPEG").write_bytes(data)
    (src / "train" / "n01000000" / "broken.JPEG").write_bytes(b"\xff\xd8 truncated")
    (src / "val").mkdir()
    for i, (data, _) in enumerate(jpegs[6:]):
        (src / "val" / f"val{i}.JPEG").write_bytes(data)
    (src / "val.txt").write_text("val0.JPEG 1\nval1.JPEG n01000000\nval2.JPEG 0\n")
    cmd = [sys.executable, "-m", "hpcsgd", "convert", "imagenet", "--src", str(src), "--out", str(tmp_path / "out"),
           "--val-labels", str(src / "val.txt"), "--workers", "2", "--resize", "300"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "train: wrote 6 records" in out and "1 unreadable files skipped" in out
    assert "val: wrote 3 records" in out

    train = LMDBReader(tmp_path / "out" / "train")
    assert (train.path / "classes.txt").read_text().split() == ["n01000000", "n02000000"]
    assert train.key(0) == "00000000_n01000000/img0.JPEG"
    records = [decode_datum(r) for r in train.get_many(range(len(train)))]
    assert [d.label for d in records] == [0, 0, 0, 1, 1, 1]
    assert all(d.encoded and d.data[:2] == b"\xff\xd8" for d in records)
    assert all(min(d.height, d.width) == 300 for d in records)  # resized: shorter side 300
    summary = json.loads((train.path / "summary.json").read_text())
    assert summary["per_class"] == {"n01000000": 3, "n02000000": 3}
    assert summary["bytes"] == sum(len(d.data) for d in records)
    assert "broken.JPEG" in summary["skipped"][0]

    val = LMDBReader(tmp_path / "out" / "val")
    assert [decode_datum(r).label for r in val.get_many(range(3))] == [1, 0, 0]
    # without --resize the JPEG bytes are stored untouched; a finished split is skipped
    again = subprocess.run(cmd[:-2], capture_output=True, text=True, check=True).stdout
    assert "already converted" in again
    subprocess.run(cmd[:-2] + ["--force", "--splits", "val"], check=True, capture_output=True)
    val = LMDBReader(tmp_path / "out" / "val")
    assert decode_datum(val.get_many([0])[0]).data == jpegs[6][0]
