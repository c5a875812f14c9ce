import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from hpcsgd.config import DataConfig
from hpcsgd.data import transforms as T
from hpcsgd.data.jpeg import decode
from hpcsgd.data.sources import ImageNetSource
from imagenet_helpers import sample_jpegs, write_jpeg_lmdb


def test_centre_crop_box_is_the_224_window_of_the_256_resize():
    box = T.centre_crop_box(375, 500, resize=256, crop=224)
    side = 224 * 375 / 256  # 224 pixels of the resized image, in original pixels
    assert box == pytest.approx(T.Box((500 - side) / 2, (375 - side) / 2, side, side))


def test_collapse_box_is_a_random_224_window_of_the_256_resize():
    rng = np.random.default_rng(0)
    k = 256 / 375  # resized image: 341 x 256
    offsets = set()
    for _ in range(200):
        box = T.collapse_crop_box(375, 500, rng, resize=256, crop=224)
        assert box.w == pytest.approx(224 / k) and box.h == pytest.approx(224 / k)
        ox, oy = box.x * k, box.y * k
        assert ox == pytest.approx(round(ox)) and 0 <= round(ox) <= 341 - 224
        assert oy == pytest.approx(round(oy)) and 0 <= round(oy) <= 256 - 224
        offsets.add((round(ox), round(oy)))
    assert len(offsets) > 50  # the crop is random, not fixed


def test_random_resized_crop_draws_area_and_aspect_in_the_ranges():
    rng = np.random.default_rng(1)
    areas, ratios = [], []
    for _ in range(2000):
        box = T.random_resized_crop_box(375, 500, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
        assert 0 <= box.x and box.x + box.w <= 500 and 0 <= box.y and box.y + box.h <= 375
        areas.append(box.w * box.h / (375 * 500))
        ratios.append(box.w / box.h)
    assert 0.07 < min(areas) and max(areas) <= 1.0
    assert np.median(areas) == pytest.approx(0.5, abs=0.1)  # ~uniform over [0.08, 1]
    inside = [r for r, a in zip(ratios, areas) if a < 0.5]  # small crops: no clamping by rounding
    assert 0.74 < min(inside) and max(inside) < 1.35


def test_random_resized_crop_falls_back_to_a_clamped_centre_crop():
    rng = np.random.default_rng(2)
    # a very wide image and a scale range that cannot fit: centred box of ratio 4/3 at full height
    box = T.random_resized_crop_box(10, 1000, rng, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3))
    assert (box.w, box.h) == (13, 10) and box.x == (1000 - 13) // 2


@pytest.mark.parametrize("w, h, factor", [(500, 375, 1), (448, 448, 2), (447, 900, 1),
                                          (1800, 1800, 8), (1000, 900, 4)])
def test_dct_factor_never_shrinks_the_crop_below_the_output(w, h, factor):
    assert T.dct_factor(T.Box(0, 0, w, h), 224) == factor


def test_scaled_box_stays_inside_the_decoded_image():
    assert T.scaled_box(T.Box(0, 0, 500, 375), 0.5, 0.5, 250, 188) == (0, 0, 250, 188)
    assert T.scaled_box(T.Box(499.9, 374.9, 0.01, 0.01), 1, 1, 500, 375) == (499, 374, 500, 375)


def test_resize_crop_flips_and_copies_exact_windows():
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    out = np.empty((4, 4, 3), np.uint8)
    T.resize_crop(img, (2, 1, 6, 5), 4, out, flip=False)
    assert np.array_equal(out, img[1:5, 2:6])
    T.resize_crop(img, (2, 1, 6, 5), 4, out, flip=True)
    assert np.array_equal(out, img[1:5, 2:6][:, ::-1])


def test_normalize_gives_channels_last_float_with_the_statistics():
    pixels = np.full((2, 3, 3, 3), 255, np.uint8)
    images = T.normalize_batch(pixels, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert images.shape == (2, 3, 3, 3) and images.dtype == torch.float32
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert images[0, :, 0, 0].tolist() == pytest.approx([2.0, 1.0, 0.5])


def _resized_256(jpeg: bytes) -> np.ndarray:
    """The documented transform done the plain way: shorter side resized to 256."""
    im = Image.open(io.BytesIO(jpeg)).convert("RGB")
    k = 256 / min(im.size)
    return np.asarray(im.resize((round(im.width * k), round(im.height * k)), Image.BILINEAR),
                      dtype=np.float32)


def _best_window(crop: np.ndarray, resized: np.ndarray, ox: int, oy: int, reach: int = 3):
    """Offset of the 224 window of `resized` near (ox, oy) that `crop` matches best."""
    errors = {(x, y): np.abs(crop - resized[y:y + 224, x:x + 224]).mean()
              for x in range(max(0, ox - reach), min(resized.shape[1] - 224, ox + reach) + 1)
              for y in range(max(0, oy - reach), min(resized.shape[0] - 224, oy + reach) + 1)}
    best = min(errors, key=errors.get)
    return best, errors[best]


def _source(tmp_path, items):
    write_jpeg_lmdb(tmp_path / "db", items)
    return ImageNetSource(DataConfig(name="imagenet", fast_decode=False), tmp_path / "db", 20)


def test_eval_and_collapse_transforms_produce_the_documented_crops(tmp_path):
    items = sample_jpegs(4, seed=3)
    src = _source(tmp_path, items)
    out = np.empty((4, 224, 224, 3), np.uint8)
    src.fill(out, [0, 1, 2, 3], mode="eval", seed_key=(0, 0))
    for i, (jpeg, _) in enumerate(items):
        resized = _resized_256(jpeg)
        ox, oy = (resized.shape[1] - 224) // 2, (resized.shape[0] - 224) // 2
        (bx, by), error = _best_window(out[i].astype(np.float32), resized, ox, oy)
        # the centred window (within the half pixel that rounding leaves), not a neighbour
        assert abs(bx - ox) <= 1 and abs(by - oy) <= 1 and error < 8

    src.fill(out, [0, 1, 2, 3], mode="collapse", seed_key=(5, 7))
    for i, (jpeg, _) in enumerate(items):
        resized = _resized_256(jpeg)
        rng = np.random.default_rng([5, 7, i, 2])  # the source's per-sample generator
        box = T.collapse_crop_box(*resized.shape[:2], rng, resize=256, crop=224)
        crop = out[i].astype(np.float32)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        (bx, by), error = _best_window(crop, resized, round(box.x), round(box.y))
        assert abs(bx - box.x) <= 1 and abs(by - box.y) <= 1 and error < 8


def test_reduced_size_decode_matches_full_decode(tmp_path):
    jpeg, _ = sample_jpegs(1, seed=4)[0]
    full = decode(jpeg, factor=1, fast=False).astype(np.float32)
    half = decode(jpeg, factor=2, fast=False)
    assert half.shape == (math.ceil(full.shape[0] / 2), math.ceil(full.shape[1] / 2), 3)
    out = np.empty((2, 160, 160, 3), np.uint8)
    T.resize_crop(full.astype(np.uint8), (0, 0, 320, 320), 160, out[0], flip=False)
    T.resize_crop(half, (0, 0, 160, 160), 160, out[1], flip=False)
    assert np.abs(out[0].astype(float) - out[1]).mean() < 4.0
