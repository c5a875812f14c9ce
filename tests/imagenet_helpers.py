"""Small real ImageNet-style LMDBs for tests: JPEGs cut from the foolbox wheel's photographs."""
from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np

from hpcsgd.store.lmdb_store import LMDBWriter
from hpcsgd.store.datum import Datum

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("imagenet_samples", ROOT / "tools/imagenet_samples.py")
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)


def sample_jpegs(n: int, seed: int = 0) -> list[tuple[bytes, int]]:
    """n realistic (about 500x375, quality 90) JPEGs with labels 0..19 (photo number)."""
    rng = np.random.default_rng(seed)
    photos = samples.fetch()
    out = []
    for i in range(n):
        photo, _ = photos[i % len(photos)]
        out.append((next(samples.variants(photo, 1, rng)), i % len(photos)))
    return out


def write_jpeg_lmdb(path: Path, items, *, bad: dict[int, bytes] | None = None) -> None:
    """Encoded Datum records; `bad` replaces the values of some records with given bytes."""
    bad = bad or {}
    with LMDBWriter(path, map_size=1 << 28) as w:
        for i, (data, label) in enumerate(items):
            if i in bad:
                w.put_bytes(bad[i], key=f"{i:08d}_bad{i}".encode())
                continue
            w.put(Datum(channels=3, height=375, width=500, data=data, label=label, encoded=True),
                  key=f"{i:08d}_img{i}.JPEG".encode())


def encoded(data: bytes, label: int) -> bytes:
    from hpcsgd.store.datum import encode_datum
    return encode_datum(Datum(data=data, label=label, encoded=True))


def png_bytes(h: int, w: int) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, "PNG")
    return buf.getvalue()
