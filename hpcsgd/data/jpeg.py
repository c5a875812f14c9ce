"""Image bytes -> HWC uint8 RGB: only the crop box, at reduced size when the crop allows it.

`decode_box` decodes just the region a crop box needs, at 1/factor scale, with TurboJPEG 3
(hpcsgd.data.turbo) when its library is there. Otherwise, and for what it refuses, whole
JPEGs go through simplejpeg (libjpeg-turbo with SIMD, bundled in its wheel): it reads the
header without decoding, decodes at 1/2, 1/4, 1/8 size by scaling the inverse DCT (the
work of the skipped pixels is never done), and offers the fast integer IDCT and plain
chroma upsampling. Measured the fastest decoder PyPI offers here (docs/data_path.md).
Anything simplejpeg refuses (PNG records, CMYK JPEGs, JPEGs with recoverable glitches)
falls back to Pillow; what Pillow cannot read either is corrupt.
"""
from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from hpcsgd.data import turbo
from hpcsgd.store.datum import RecordError

REGION_DECODE = turbo.available()
"""Decode only the crop box with TurboJPEG 3 (benchmarks switch it off to compare)."""
region_stats = {"region": 0, "fallback": 0}
"""This process's region decodes, and those TurboJPEG refused (then a whole decode ran)."""


class ImageDecodeError(RecordError):
    """Bytes that are not a readable image (truncated, corrupt, unknown format): a bad record,
    counted and skipped by the loader like any other RecordError."""


def image_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the header only."""
    try:
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        return h, w
    except ValueError:
        pass
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.height, im.width
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        # a bomb is a corrupt record too (the caller's pixel limit is usually lower)
        raise ImageDecodeError(f"not a readable image ({e})") from None


_buffer = np.empty(0, np.uint8)  # this process's decode buffer, reused image after image


def decode(data: bytes, *, factor: int = 1, fast: bool = True,
           size: tuple[int, int] | None = None, fast_upsampling: bool | None = None) -> np.ndarray:
    """Decode to HWC uint8 RGB at 1/factor of the size (factor a power of two; the output is
    ceil(size/factor), as libjpeg-turbo scales). `size` = (height, width) if already known.
    fast: the fast integer IDCT and, unless fast_upsampling says otherwise, merged chroma
    upsampling (region decodes always upsample smoothly: hpcsgd/data/turbo.py).

    The result of a JPEG decode is a view of a buffer this process reuses: valid until its
    next call (no fresh 0.5 MB allocation and its page faults per image)."""
    global _buffer
    h, w = size or image_size(data)
    oh, ow = -(-h // factor), -(-w // factor)
    if _buffer.size < oh * ow * 3:
        _buffer = np.empty(oh * ow * 3, np.uint8)
    try:
        # the smallest DCT scaling whose output is at least this size: exactly 1/factor
        upsample = fast if fast_upsampling is None else fast_upsampling
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=fast, fastupsample=upsample,
                                      min_height=oh, min_width=ow, buffer=_buffer)
    except ValueError:
        return _decode_pillow(data, factor)


def _decode_pillow(data: bytes, factor: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            if factor > 1 and im.format == "JPEG":
                im.draft("RGB", (-(-im.width // factor), -(-im.height // factor)))
            # writable (torch views it without a warning); convert() of an RGB image would be
            # one more full copy: 4 bytes a pixel, 150 MiB at data.max_image_pixels' default
            return np.array(im if im.mode == "RGB" else im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"image data cannot be decoded ({e})") from None


def decode_box(data: bytes, box, size: tuple[int, int], *, factor: int = 1,
               fast: bool = True, region: bool = True) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Decode what crop `box` (hpcsgd.data.transforms.Box, original pixels) needs, at
    1/factor scale, for an image of `size` = (height, width). Returns (HWC uint8 RGB image,
    the box in its pixels as (x0, y0, x1, y1)). The image may be a reused buffer's view.
    `region`: use TurboJPEG's region decode when available (data.region_decode)."""
    from hpcsgd.data.transforms import scaled_box
    h, w = size
    # a region decode never reads the rows below the box, so it would not notice a truncated
    # file: only JPEGs that end with their EOI marker take it, the rest a strict whole decode
    if region and REGION_DECODE and data.endswith(b"\xff\xd9"):
        head = turbo.header(data)
        if head is not None and head[:2] == (h, w):
            sh, sw = -(-h // factor), -(-w // factor)  # TurboJPEG's scaled size (rounded up)
            x0, y0, x1, y1 = scaled_box(box, sw / w, sh / h, sw, sh)
            try:
                image, shift = turbo.decode_region(data, head[2], (x0, y0, x1, y1), factor,
                                                   fast=fast, scaled_width=sw)
                region_stats["region"] += 1
                return image, (shift, 0, shift + x1 - x0, y1 - y0)
            except turbo.TurboError:
                region_stats["fallback"] += 1  # simplejpeg / Pillow below take it
    image = decode(data, factor=factor, fast=fast, size=size)
    ih, iw = image.shape[:2]
    return image, scaled_box(box, iw / w, ih / h, iw, ih)


def region_matches_whole(data: bytes, box, size: tuple[int, int], *, factor: int, fast: bool,
                         tolerance: int = 1) -> bool:
    """Whether decode_box's region decode of `box` equals the same box of a whole-image
    decode with the same IDCT and smooth upsampling (region decodes always upsample
    smoothly: hpcsgd/data/turbo.py), within `tolerance` levels. The check of
    tests/unit/test_data_jpeg.py and tools/stress_region_decode.py."""
    from hpcsgd.data.transforms import scaled_box
    h, w = size
    image, (x0, y0, x1, y1) = decode_box(data, box, size, factor=factor, fast=fast)
    region = image[y0:y1, x0:x1].astype(int)  # a copy: the next decode reuses the buffers
    whole = decode(data, factor=factor, fast=fast, size=size, fast_upsampling=False)
    a0, b0, a1, b1 = scaled_box(box, whole.shape[1] / w, whole.shape[0] / h,
                                whole.shape[1], whole.shape[0])
    ref = whole[b0:b1, a0:a1].astype(int)
    return region.shape == ref.shape and int(np.abs(region - ref).max()) <= tolerance
