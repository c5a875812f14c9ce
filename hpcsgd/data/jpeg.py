"""Image bytes -> HWC uint8 RGB, at reduced size when asked (JPEG DCT scaling).

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


class ImageDecodeError(ValueError):
    """Bytes that are not a readable image (truncated, corrupt, unknown format)."""


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
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageDecodeError(f"not a readable image ({e})") from None


def decode(data: bytes, *, factor: int = 1, fast: bool = True) -> np.ndarray:
    """Decode to HWC uint8 RGB at 1/factor of the size (factor a power of two; the output is
    ceil(size/factor), as libjpeg-turbo scales)."""
    h, w = image_size(data)
    try:
        # the smallest DCT scaling whose output is at least this size: exactly 1/factor
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=fast, fastupsample=fast,
                                      min_height=-(-h // factor), min_width=-(-w // factor))
    except ValueError:
        return _decode_pillow(data, factor)


def _decode_pillow(data: bytes, factor: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            if factor > 1 and im.format == "JPEG":
                im.draft("RGB", (-(-im.width // factor), -(-im.height // factor)))
            return np.array(im.convert("RGB"))  # writable: torch views it without a warning
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"image data cannot be decoded ({e})") from None
