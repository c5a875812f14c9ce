"""Region decode with libjpeg-turbo's TurboJPEG 3 API, through ctypes.

TurboJPEG 3 can decode only a rectangle of a JPEG (tj3SetCroppingRegion: the rows below it
are never decoded, the columns beside it skip the inverse DCT, upsampling and colour
conversion) and at a DCT scaling (tj3SetScalingFactor). A random-resized crop needs only its
box, so this is the cheapest decode there is (measured, docs/data_path.md). Neither Debian 12's
libturbojpeg (2.1) nor the Python JPEG wheels expose region decode; the `turbojpeg` wheel
(PyPI) bundles libturbojpeg 3.0, and we call that library directly. `HPCSGD_TURBOJPEG` may
name another libturbojpeg.so of version 3. Without one, `available()` is False and
hpcsgd.data.jpeg decodes whole images with simplejpeg.

A region decoded exactly to the box differs from the whole-image decode in its edge columns
(smooth chroma upsampling has no outer neighbour there): decode_region decodes one iMCU more
on each side. libturbojpeg 3.0.0's merged ("fast") upsampler garbles cropped decodes: region
decodes always upsample smoothly. Checked by tools/stress_region_decode.py; two benchmark
runs crashed inside tj3Decompress8 with the merged upsampler, none since (docs/data_path.md).
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
from pathlib import Path

import numpy as np

# TurboJPEG 3 constants (turbojpeg.h)
_TJINIT_DECOMPRESS = 1
_TJPARAM_STOPONWARNING, _TJPARAM_SUBSAMP = 0, 4
_TJPARAM_JPEGWIDTH, _TJPARAM_JPEGHEIGHT, _TJPARAM_COLORSPACE = 5, 6, 8
_TJPARAM_FASTUPSAMPLE, _TJPARAM_FASTDCT = 9, 10
_TJPF_RGB = 0
_TJCS_CMYK, _TJCS_YCCK = 3, 4
_MCU_WIDTH = (8, 16, 16, 8, 8, 32, 8)  # by TJSAMP_444, 422, 420, GRAY, 440, 411, 441


class _ScalingFactor(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int), ("denom", ctypes.c_int)]


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


def _find_library() -> str | None:
    if os.environ.get("HPCSGD_TURBOJPEG"):
        return os.environ["HPCSGD_TURBOJPEG"]
    spec = importlib.util.find_spec("turbojpeg")  # located, not imported
    if spec is None or spec.origin is None:
        return None
    found = glob.glob(str(Path(spec.origin).parent / "turbojpeg.libs" / "libturbojpeg*.so*"))
    return found[0] if found else None


def _load():
    path = _find_library()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.tj3SetCroppingRegion  # noqa: B018 - TurboJPEG 3 or nothing
    except (OSError, AttributeError):
        return None
    v, c_int, c_size = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    lib.tj3Init.restype, lib.tj3Init.argtypes = v, [c_int]
    lib.tj3Set.argtypes = [v, c_int, c_int]
    lib.tj3Get.argtypes = [v, c_int]
    lib.tj3DecompressHeader.argtypes = [v, ctypes.c_char_p, c_size]
    lib.tj3SetScalingFactor.argtypes = [v, _ScalingFactor]
    lib.tj3SetCroppingRegion.argtypes = [v, _Region]
    lib.tj3Decompress8.argtypes = [v, ctypes.c_char_p, c_size, v, c_int, c_int]
    lib.tj3GetErrorStr.restype, lib.tj3GetErrorStr.argtypes = ctypes.c_char_p, [v]
    return lib


_lib = _load()
_handle, _handle_pid = None, None
_buffer = np.empty(0, np.uint8)


def available() -> bool:
    return _lib is not None


def _decompressor():
    """This process's TurboJPEG handle (handles are per process: made after a fork). The
    header must be read on the handle that decodes: tj3SetCroppingRegion refuses a handle
    that has not read one."""
    global _handle, _handle_pid
    if _handle is None or _handle_pid != os.getpid():
        _handle, _handle_pid = _lib.tj3Init(_TJINIT_DECOMPRESS), os.getpid()
        _lib.tj3Set(_handle, _TJPARAM_STOPONWARNING, 1)  # a truncated JPEG is an error
    return _handle


class TurboError(ValueError):
    pass


def header(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, subsampling) of a JPEG TurboJPEG can decode to RGB, else None."""
    h = _decompressor()
    if _lib.tj3DecompressHeader(h, data, len(data)) != 0:
        return None
    if _lib.tj3Get(h, _TJPARAM_COLORSPACE) in (_TJCS_CMYK, _TJCS_YCCK):
        return None  # no CMYK -> RGB conversion in libjpeg-turbo
    subsamp = _lib.tj3Get(h, _TJPARAM_SUBSAMP)
    return _lib.tj3Get(h, _TJPARAM_JPEGHEIGHT), _lib.tj3Get(h, _TJPARAM_JPEGWIDTH), subsamp


def decode_region(data: bytes, subsamp: int, region: tuple[int, int, int, int], factor: int,
                  *, fast: bool, scaled_width: int) -> tuple[np.ndarray, int]:
    """Decode `region` (x0, y0, x1, y1, in the coordinates of the image scaled by 1/factor)
    after `header(data)`. The left edge moves down to a multiple of the scaled iMCU width,
    as TurboJPEG requires, and both edges extend by up to one iMCU (the array may be wider
    than the box); returns (HWC uint8 RGB, the box's left column in it). The array is a view
    of a buffer reused by the next call. scaled_width: the image's width at 1/factor."""
    global _buffer
    h = _decompressor()
    _lib.tj3Set(h, _TJPARAM_FASTDCT, int(fast))
    # always smooth chroma upsampling: the merged ("fast") upsampler garbled 8-pixel runs of
    # the region's second row in 4 of 600 cropped decodes (libjpeg-turbo 3.0.0)
    _lib.tj3Set(h, _TJPARAM_FASTUPSAMPLE, 0)
    if _lib.tj3SetScalingFactor(h, _ScalingFactor(1, factor)) != 0:
        raise TurboError(_lib.tj3GetErrorStr(h).decode(errors="replace"))
    x0, y0, x1, y1 = region
    mcu = -(-_MCU_WIDTH[subsamp] // factor) if 0 <= subsamp < len(_MCU_WIDTH) else 8
    # one iMCU more on either side where the image has it: fancy (smooth) chroma upsampling
    # of a region's first and last columns has no outer neighbour and replicates the edge,
    # so those columns came out up to ~9 levels off the whole-image decode (in ~10% of
    # accurate-mode boxes); the left edge must stay on an iMCU boundary
    left = max(0, x0 - x0 % mcu - (mcu if x0 % mcu == 0 else 0))
    right = min(x1 + mcu, scaled_width)
    w, hh = right - left, y1 - y0
    if _lib.tj3SetCroppingRegion(h, _Region(left, y0, w, hh)) != 0:
        raise TurboError(_lib.tj3GetErrorStr(h).decode(errors="replace"))
    if _buffer.size < w * hh * 3:
        _buffer = np.empty(w * hh * 3, np.uint8)
    if _lib.tj3Decompress8(h, data, len(data), _buffer.ctypes.data, w * 3, _TJPF_RGB) != 0:
        raise TurboError(_lib.tj3GetErrorStr(h).decode(errors="replace"))
    return _buffer[:w * hh * 3].reshape(hh, w, 3), x0 - left
