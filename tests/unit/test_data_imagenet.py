"""The ImageNet path on real JPEG records: workers, determinism, bad input, shutdown."""
import os
import signal
import time

import numpy as np
import pytest
import torch

from hpcsgd.config import Config
from hpcsgd.data import TrainLoader, WorkerError, build_sources, eval_batches
from hpcsgd.store.lmdb_store import DataPathError, LMDBWriter
from hpcsgd.store.datum import Datum, raw_datum
from imagenet_helpers import encoded, png_bytes, sample_jpegs, write_jpeg_lmdb


def _cfg(workers, **data):
    cfg = Config()
    cfg.data.name, cfg.data.workers, cfg.model.num_classes = "imagenet", workers, 20
    cfg.data.crop_size, cfg.data.eval_resize = 64, 73  # small crops keep the tests quick
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


@pytest.fixture(scope="module")
def jpeg_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("imagenet") / "train"
    write_jpeg_lmdb(path, sample_jpegs(24, seed=1))
    return path


def _loader(cfg, source, local_batch=6):
    return TrainLoader(source, seed=3, rank=0, size=1, local_batch=local_batch, accumulation=1,
                       augment=True, prefetch=cfg.data.prefetch_batches)


def test_workers_deliver_exactly_what_in_process_decoding_does(jpeg_db):
    (inproc,) = build_sources(_cfg(0), [jpeg_db], local_batch=6)
    (pooled,) = build_sources(_cfg(2), [jpeg_db], local_batch=6)
    try:
        a, b = list(_loader(_cfg(0), inproc).epoch(1)), list(_loader(_cfg(2), pooled).epoch(1))
        assert len(a) == len(b) == 4
        for (sa, _, xa, ya), (sb, _, xb, yb) in zip(a, b):
            assert sa == sb and torch.equal(ya, yb) and torch.equal(xa, xb)
        assert xb.shape == (6, 3, 64, 64) and xb.is_contiguous(memory_format=torch.channels_last)
        # a resumed epoch repeats the same samples and the same crops
        resumed = list(_loader(_cfg(2), pooled).epoch(1, start_step=2))
        assert all(torch.equal(x[2], y[2]) for x, y in zip(b[2:], resumed))
        # the collapse mode changes the crops, not the samples
        collapsed = list(_loader(_cfg(2), pooled).epoch(1, collapse=True))
        assert torch.equal(collapsed[0][3], b[0][3]) and not torch.equal(collapsed[0][2], b[0][2])
        # a collapse that starts inside the epoch (at step 2) switches the crops there
        switched = list(_loader(_cfg(2), pooled).epoch(1, collapse=lambda step: step >= 2))
        assert all(torch.equal(x[2], y[2]) for x, y in zip(switched[:2], b[:2]))
        assert all(torch.equal(x[2], y[2]) for x, y in zip(switched[2:], collapsed[2:]))
        # evaluation through the pool in pieces no larger than a slot, whatever the batch
        ev = [y for _, y in eval_batches(pooled, rank=0, size=1, batch=10)]
        assert [len(y) for y in ev] == [10, 10, 4]
    finally:
        pooled.pool.close()


def test_an_epoch_closed_early_frees_its_slots(jpeg_db):
    (src,) = build_sources(_cfg(1, prefetch_batches=2), [jpeg_db], local_batch=4)
    try:
        loader = _loader(_cfg(1), src, local_batch=4)
        for _ in range(3):  # the trainer stops mid-epoch, then starts the next one
            it = loader.epoch(0)
            next(it)
            it.close()
        assert len(list(loader.epoch(1))) == loader.steps_per_epoch
    finally:
        src.pool.close()


def test_bad_jpegs_and_labels_are_replaced_counted_and_named(tmp_path):
    items = sample_jpegs(12, seed=2)
    truncated = encoded(items[0][0][:3000], 0)
    garbage = encoded(b"\xff\xd8\xff\xe0 not really a jpeg", 1)
    bad_label = encoded(items[1][0], 99)
    write_jpeg_lmdb(tmp_path / "db", items, bad={2: truncated, 5: garbage, 7: bad_label,
                                                  9: b"\x22\x7f not a datum"})
    (src,) = build_sources(_cfg(0, max_corrupt_fraction=0.01), [tmp_path / "db"], local_batch=12)
    _, _, images, labels = next(TrainLoader(src, seed=0, rank=0, size=1, local_batch=12,
                                            accumulation=1, augment=True).epoch(0))
    assert images.shape[0] == 12 and src.stats.corrupt == 4
    assert sorted(src.stats.corrupt_keys) == ["00000002_bad2", "00000005_bad5",
                                              "00000007_bad7", "00000009_bad9"]
    n = sum(len(y) for _, y in eval_batches(src, rank=0, size=1, batch=12))
    assert n == 8 and src.stats.corrupt == 8  # evaluation leaves them out


def test_png_and_raw_bgr_records_decode_to_rgb(tmp_path):
    with LMDBWriter(tmp_path / "db", map_size=1 << 26) as w:
        w.put(Datum(data=png_bytes(80, 90), label=1, encoded=True))
        bgr = np.zeros((3, 80, 80), np.uint8)
        bgr[0] = 200  # blue in Caffe's BGR order
        w.put(raw_datum(bgr, 2))
    (src,) = build_sources(_cfg(0), [tmp_path / "db"], local_batch=2)
    out = np.empty((2, 64, 64, 3), np.uint8)
    result = src.fill(out, [0, 1], mode="eval", seed_key=(0, 0))
    assert result.labels == [1, 2] and not result.corrupt
    assert (out[0] == 128).all()
    assert (out[1][..., 2] == 200).all() and (out[1][..., :2] == 0).all()  # blue is channel 2


def test_class_count_of_the_lmdb_must_match_the_model(jpeg_db, tmp_path):
    import shutil
    db = tmp_path / "db"
    shutil.copytree(jpeg_db, db)
    (db / "classes.txt").write_text("\n".join(f"n{i:08d}" for i in range(5)) + "\n")
    with pytest.raises(DataPathError, match=r"lists 5 classes but model.num_classes = 20"):
        build_sources(_cfg(0), [db], local_batch=4)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purposes
        return f.read().split(")")[-1].split()[0] != "Z"


def test_workers_stop_on_close_and_a_dead_worker_is_reported(jpeg_db):
    (src,) = build_sources(_cfg(2), [jpeg_db], local_batch=4)
    pids = src.pool.pids
    assert all(_alive(p) for p in pids)
    src.pool.set_affinity([sorted(os.sched_getaffinity(0))[:1]])
    assert all(os.sched_getaffinity(p) == set(sorted(os.sched_getaffinity(0))[:1]) for p in pids)
    os.kill(pids[0], signal.SIGKILL)
    time.sleep(0.2)
    loader = _loader(_cfg(2), src, local_batch=4)
    with pytest.raises(WorkerError, match=r"hpcsgd-decode-0 .* died with exit code -9"):
        for _ in loader.epoch(0):
            pass
    src.pool.close()
    assert not any(_alive(p) for p in pids)


def _sharp_jpeg(h: int, w: int) -> bytes:
    """Saturated colour blocks and one-pixel stripes, 4:2:0: where fast IDCT and merged
    chroma upsampling differ most from the accurate decode."""
    import io

    from PIL import Image
    rng = np.random.default_rng(5)
    img = np.kron(rng.integers(0, 2, (h // 8, w // 8, 3)) * 255, np.ones((8, 8, 1)))
    img[:, ::3] = [255, 0, 0]
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, "JPEG", quality=90, subsampling=2)
    return buf.getvalue()


def test_evaluation_decodes_as_pillow_does(tmp_path):
    # the numbers users compare with the papers: accurate integer IDCT, smooth upsampling,
    # full resolution (Caffe's OpenCV decode and Pillow), not the training path's fast decode
    import io

    from PIL import Image

    from hpcsgd.data import transforms
    data = _sharp_jpeg(296, 400)
    write_jpeg_lmdb(tmp_path / "val", [(data, 3)])
    cfg = _cfg(0)
    (source,) = build_sources(cfg, [tmp_path / "val"], local_batch=1)
    out = np.zeros((1, 64, 64, 3), np.uint8)
    source.fill(out, [0], mode="eval", seed_key=(0, 0))
    whole = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    box = transforms.centre_crop_box(296, 400, resize=73, crop=64)
    ref = np.zeros((64, 64, 3), np.uint8)
    transforms.resize_crop(whole, transforms.scaled_box(box, 1.0, 1.0, 400, 296), 64, ref,
                           flip=False)
    assert int(np.abs(out[0].astype(int) - ref).max()) <= 1


def _jpeg_claiming(height: int, width: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims height x width."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _png_claiming(height: int, width: int) -> bytes:
    """A tiny PNG (one compressed row) whose header claims height x width."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4)) + chunk(b"IEND", b""))


def test_image_bombs_are_counted_as_corrupt_before_anything_is_allocated(tmp_path):
    # a 69-byte PNG or a ~600-byte JPEG whose header claims 20000 x 20000 (Pillow's
    # DecompressionBombError ended the job), and a JPEG claiming 12000 x 12000 (decoded at
    # full size: 2.4 GB and 3 s per image): refused by data.max_image_pixels, counted
    import resource
    items = sample_jpegs(10, seed=3)
    bombs = {1: encoded(_png_claiming(20000, 20000), 0),
             4: encoded(_jpeg_claiming(20000, 20000), 1),
             6: encoded(_jpeg_claiming(12000, 12000), 2)}
    assert len(_png_claiming(20000, 20000)) < 100
    write_jpeg_lmdb(tmp_path / "db", items, bad=bombs)
    (src,) = build_sources(_cfg(0, max_corrupt_fraction=0.5), [tmp_path / "db"], local_batch=10)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, _, images, _ = next(TrainLoader(src, seed=0, rank=0, size=1, local_batch=10,
                                       accumulation=1, augment=True).epoch(0))
    assert images.shape[0] == 10 and src.stats.corrupt == 3
    assert sorted(src.stats.corrupt_keys) == ["00000001_bad1", "00000004_bad4", "00000006_bad6"]
    n = sum(len(y) for _, y in eval_batches(src, rank=0, size=1, batch=10))
    assert n == 7 and src.stats.corrupt == 6               # evaluation leaves them out too
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grew_mb < 500, grew_mb                           # nothing of the claimed size
