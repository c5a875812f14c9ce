"""The papers' image transforms as pure functions: crop boxes, DCT factor, resize, normalise.

A transform is split in two. `*_box` functions choose the region of the original image
(pure maths of the image size and a random generator, tested without images); `resize_crop`
cuts that region from a decoded image and resamples it to the output size. Choosing the box
first lets the decoder work at reduced size (JPEG DCT scaling) when the box is large.

- train:    random-resized crop (area fraction and aspect ratio drawn from configurable
            ranges) + horizontal flip: "scale and aspect ratio augmentation" (Codreanu V-A).
- collapse: the image resized so its shorter side is `resize`, then a random `crop` x `crop`
            window + flip; no scale/aspect augmentation (Codreanu V-B2 "disable data
            augmentation (while still keeping the random crop)").
- eval:     shorter side resized to `resize` (256), the centred `crop` (224) window.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

MODES = ("train", "collapse", "eval")

# F.interpolate(mode="bilinear", antialias=True, align_corners=False) without its Python
# argument handling, which costs as much as the kernel on one 224 x 224 crop
_bilinear_aa = torch.ops.aten._upsample_bilinear2d_aa.default

# ImageNet channel statistics of pixel values in [0, 1] (RGB order), the common reference.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Box(NamedTuple):
    """A region of the original image, in its pixel coordinates (may be fractional)."""
    x: float
    y: float
    w: float
    h: float


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator, *,
                            scale: tuple[float, float], ratio: tuple[float, float]) -> Box:
    """Area fraction ~ U(scale), aspect w/h ~ log-U(ratio); 10 tries, then the largest
    centred box whose aspect is clamped into `ratio` (the Inception / torchvision rule)."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        # Python floats: numpy scalars make the rounding below ~20x slower
        target = area * float(rng.uniform(scale[0], scale[1]))
        aspect = math.exp(float(rng.uniform(log_lo, log_hi)))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x = int(rng.integers(0, width - w + 1))
            y = int(rng.integers(0, height - h + 1))
            return Box(x, y, w, h)
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return Box((width - w) // 2, (height - h) // 2, w, h)


def collapse_crop_box(height: int, width: int, rng: np.random.Generator, *,
                      resize: int, crop: int) -> Box:
    """A uniformly placed crop x crop window of the image resized to shorter side `resize`."""
    k = resize / min(height, width)
    rw, rh = max(crop, round(width * k)), max(crop, round(height * k))
    ox = int(rng.integers(0, rw - crop + 1))
    oy = int(rng.integers(0, rh - crop + 1))
    return Box(ox / k, oy / k, crop / k, crop / k)


def centre_crop_box(height: int, width: int, *, resize: int, crop: int) -> Box:
    """The centred crop x crop window of the image resized to shorter side `resize`."""
    side = crop * min(height, width) / resize
    return Box((width - side) / 2, (height - side) / 2, side, side)


def dct_factor(box: Box, crop: int, *, max_factor: int = 8) -> int:
    """Largest power-of-two reduction (1, 2, 4, 8) that still leaves the box at least `crop`
    pixels on each side, so decoding at 1/f never upsamples what full decoding would not.
    Only powers of two: libjpeg-turbo's M/8 scalings are slower than a full decode (measured,
    docs/data_path.md)."""
    f = 1
    while f * 2 <= max_factor and box.w / (f * 2) >= crop and box.h / (f * 2) >= crop:
        f *= 2
    return f


def scaled_box(box: Box, sx: float, sy: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The box in a decoded image scaled by (sx, sy): integer edges (rounded, at most half a
    decoded pixel off), at least one pixel, inside the image. Returns (x0, y0, x1, y1)."""
    x0 = min(max(0, round(box.x * sx)), width - 1)
    y0 = min(max(0, round(box.y * sy)), height - 1)
    x1 = min(max(x0 + 1, round((box.x + box.w) * sx)), width)
    y1 = min(max(y0 + 1, round((box.y + box.h) * sy)), height)
    return x0, y0, x1, y1


def resize_crop(image: np.ndarray, region: tuple[int, int, int, int], size: int,
                out: np.ndarray, *, flip: bool) -> None:
    """Cut `region` (x0, y0, x1, y1) of an HWC uint8 image, resample it to size x size
    (bilinear, antialiased when shrinking) and write it, mirrored if `flip`, into `out`."""
    x0, y0, x1, y1 = region
    chw = torch.from_numpy(image).permute(2, 0, 1)[None, :, y0:y1, x0:x1]
    if (y1 - y0, x1 - x0) == (size, size):
        resized = chw
    else:  # torch's uint8 antialiased bilinear kernel: the fastest resampler we have (measured)
        resized = _bilinear_aa(chw.contiguous(memory_format=torch.channels_last), [size, size],
                               False)
    hwc = resized[0].permute(1, 2, 0)
    # torch's flip copy: 15x faster than numpy's negative-stride copy of 3-byte pixels
    torch.from_numpy(out).copy_(hwc.flip(1) if flip else hwc)


def normalize_batch(pixels_nhwc: np.ndarray, mean: tuple[float, ...],
                    std: tuple[float, ...]) -> torch.Tensor:
    """uint8 NHWC -> float32 (x/255 - mean)/std as an NCHW tensor in channels_last memory
    (NHWC underneath: oneDNN's layout, so the trainer's .contiguous(channels_last) is free).
    One pass over the batch in the training process; the result owns its memory.

    The per-channel constants are tiled along a whole image row (W x C values), so the fused
    multiply-add runs over long contiguous rows: 7x faster than broadcasting a size-C last
    dimension (measured, docs/data_path.md)."""
    n, h, w, c = pixels_nhwc.shape
    images = torch.from_numpy(pixels_nhwc).to(torch.float32)
    rows = images.view(n * h, w * c)
    std_px = torch.tensor(std, dtype=torch.float32) * 255.0
    scale = (1.0 / std_px).repeat(w)
    shift = (-torch.tensor(mean, dtype=torch.float32) * 255.0 / std_px).repeat(w)
    torch.addcmul(shift, rows, scale, out=rows)
    return images.permute(0, 3, 1, 2)
