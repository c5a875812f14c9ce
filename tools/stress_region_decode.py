#!/usr/bin/env python3
"""Stress test of the region decode (data.region_decode, hpcsgd/data/turbo.py).

    .venv/bin/python tools/stress_region_decode.py [--seconds 60] [--workers 2] [--images 100]

Region decode crashed (SIGSEGV in libturbojpeg 3.0.0's tj3Decompress8) twice in benchmark
runs that alternate fast and accurate decoding (docs/data_path.md). This runs the same mix
for --seconds in --workers processes, each a fresh child so that a crash is seen as its exit
status: random-resized-crop boxes at every DCT scale the transform uses, fast and accurate
modes alternating, simplejpeg and Pillow decodes in between, on ImageNet-sized variants of
the 20 real photographs (tools/imagenet_samples.py). Every region is also checked against
the same region of a whole-image decode (the same mode): a wrong pixel is an error too.
Prints decodes per worker and exits non-zero on any crash or mismatch.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _worker(seed: int, seconds: float, images: int, out) -> None:
    import numpy as np
    import simplejpeg
    from PIL import Image

    import imagenet_samples
    from hpcsgd.data import jpeg
    from hpcsgd.data.transforms import random_resized_crop_box

    rng = np.random.default_rng(seed)
    photos = [p for p, _ in imagenet_samples.fetch()]
    blobs = []
    for i in range(images):
        blobs.extend(imagenet_samples.variants(photos[i % len(photos)], 1, rng))
    decodes = mismatches = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = blobs[int(rng.integers(len(blobs)))]
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        box = random_resized_crop_box(h, w, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
        factor = int(rng.choice([1, 2, 4, 8]))
        fast = bool(decodes % 2)
        # the same pixels as a whole decode with the same IDCT and smooth upsampling
        if not jpeg.region_matches_whole(data, box, (h, w), factor=factor, fast=fast):
            mismatches += 1
        Image.open(io.BytesIO(data)).convert("RGB").load()
        decodes += 1
    out.send((decodes, mismatches, dict(jpeg.region_stats)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=100)
    args = ap.parse_args(argv)
    from hpcsgd.data import turbo
    if not turbo.available():
        print("region decode not available (no libturbojpeg 3): nothing to stress")
        return 0
    print(f"libturbojpeg: {turbo._find_library()}")
    ctx = mp.get_context("spawn")
    procs = []
    for seed in range(args.workers):
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(seed, args.seconds, args.images, send))
        p.start()
        procs.append((p, recv))
    failed = False
    for seed, (p, recv) in enumerate(procs):
        p.join()
        if p.exitcode != 0:
            print(f"worker {seed}: DIED with exit code {p.exitcode}")
            failed = True
            continue
        decodes, mismatches, stats = recv.recv()
        print(f"worker {seed}: {decodes} boxes, {stats['region']} decoded as regions, "
              f"{stats['fallback']} refused by TurboJPEG (whole decode instead), "
              f"{mismatches} differ from the whole decode")
        failed |= mismatches > 0 or stats["fallback"] > 0 or stats["region"] < decodes
    print("FAILED" if failed else "ok: no crash, every box region-decoded and equal to the "
          "whole decode's")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
