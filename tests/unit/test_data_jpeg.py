import io

import numpy as np
import pytest
from PIL import Image

from hpcsgd.data import jpeg, turbo
from hpcsgd.data.transforms import Box
from imagenet_helpers import sample_jpegs


@pytest.fixture(scope="module")
def photo():
    return sample_jpegs(1, seed=9)[0][0]


@pytest.mark.skipif(not turbo.available(), reason="no TurboJPEG 3 library (turbojpeg wheel)")
@pytest.mark.parametrize("factor", [1, 2])
def test_region_decode_equals_the_same_region_of_a_whole_decode(photo, factor, monkeypatch):
    h, w = jpeg.image_size(photo)
    box = Box(37.4, 21.0, 300.0, 250.0)  # left edge not on an MCU boundary
    region_img, region = jpeg.decode_box(photo, box, (h, w), factor=factor, fast=False)
    region_img = region_img.copy()
    whole, whole_region = jpeg.decode_box(photo, box, (h, w), factor=factor, fast=False,
                                          region=False)
    x0, y0, x1, y1 = region
    wx0, wy0, wx1, wy1 = whole_region
    assert (x1 - x0, y1 - y0) == (wx1 - wx0, wy1 - wy0)
    a = region_img[y0:y1, x0:x1].astype(int)
    b = whole[wy0:wy1, wx0:wx1].astype(int)
    assert np.abs(a - b).mean() < 0.5  # same pixels (libjpeg-turbo builds may differ by 1)


def _random_boxes(count, seed):
    from hpcsgd.data.transforms import random_resized_crop_box
    rng = np.random.default_rng(seed)
    images = [blob for blob, _ in sample_jpegs(8, seed=4)]
    for i in range(count):
        data = images[i % len(images)]
        h, w = jpeg.image_size(data)
        box = random_resized_crop_box(h, w, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
        yield data, (h, w), box, int(rng.choice([1, 2, 4])), bool(i % 2)


@pytest.mark.skipif(not turbo.available(), reason="no TurboJPEG 3 library (turbojpeg wheel)")
def test_region_decode_really_decodes_regions(monkeypatch):
    # a refused region decode falls back to a whole decode silently in training: here it must
    # not happen (a whole decode would make every region comparison pass)
    monkeypatch.setattr(jpeg, "region_stats", {"region": 0, "fallback": 0})
    for data, size, box, factor, fast in _random_boxes(40, seed=5):
        jpeg.decode_box(data, box, size, factor=factor, fast=fast)
    assert jpeg.region_stats == {"region": 40, "fallback": 0}


@pytest.mark.skipif(not turbo.available(), reason="no TurboJPEG 3 library (turbojpeg wheel)")
def test_region_decode_equals_the_whole_decode_on_random_boxes():
    # the same pixels as a whole-image decode with the same IDCT and smooth upsampling, on
    # random boxes at scales 1-4 (exact-to-the-box regions differed in their edge columns, and
    # merged upsampling garbled runs of pixels: hpcsgd/data/turbo.py)
    wrong = [i for i, (data, size, box, factor, fast) in enumerate(_random_boxes(600, seed=3))
             if not jpeg.region_matches_whole(data, box, size, factor=factor, fast=fast)]
    assert not wrong, f"{len(wrong)} of 600 region decodes differ from the whole decode: {wrong[:10]}"


def test_truncated_and_garbage_bytes_raise_a_decode_error(photo):
    h, w = jpeg.image_size(photo)
    for bad in (photo[: len(photo) // 3], b"\xff\xd8\xff" + bytes(200)):
        with pytest.raises(jpeg.ImageDecodeError):
            size = jpeg.image_size(bad)
            jpeg.decode_box(bad, Box(0, 0, 100, 100), size)


def test_cmyk_and_grey_jpegs_decode_to_rgb(photo):
    im = Image.open(io.BytesIO(photo))
    for mode in ("CMYK", "L"):
        buf = io.BytesIO()
        im.convert(mode).save(buf, "JPEG", quality=90)
        data = buf.getvalue()
        size = jpeg.image_size(data)
        image, (x0, y0, x1, y1) = jpeg.decode_box(data, Box(10, 10, 200, 150), size)
        assert image.shape[2] == 3 and (x1 - x0, y1 - y0) == (200, 150)
