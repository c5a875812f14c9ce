"""Valid records and the damage tools/fuzz_records.py does to them.

A base record is (kind, Datum, stored bytes), kind one of raw28 (Fashion-MNIST), raw3 (raw
ImageNet-style, 1 or 3 channels), jpeg, png, other (GIF, BMP, WebP, PPM or TGA: an encoded
Caffe record may hold any format its writer's OpenCV read). The images are cut from real
photographs (tools/imagenet_samples.py). A mutation takes a random.Random, the base and
returns new stored bytes; `mutate` picks one that applies to the kind.
"""
from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
from PIL import Image

from hpcsgd.store.datum import Datum, encode_datum, raw_datum
from imagenet_samples import fetch

# header sizes a bomb or a lie would claim (0, tiny, over and under data.max_image_pixels)
CLAIMED_SIDES = (0, 1, 2, 7, 8, 9, 255, 4096, 6000, 6400, 8000, 12000, 20000, 65500, 65535)
HUGE_INTS = (-1, -2 ** 31, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 63 - 1, 2 ** 64 - 1, 10 ** 6, 0)


def _photo_bytes(rng: random.Random, photo: Image.Image, fmt: str) -> bytes:
    side = rng.choice((1, 3, 8, 16, 17, 40, 64, 100, 150, 256, 333))
    if rng.random() < 0.1:  # extreme aspect ratios
        size = (side, rng.choice((1, 2, 3))) if rng.random() < 0.5 else (rng.choice((1, 2)), side)
    else:
        size = (side, max(1, int(side * rng.uniform(0.5, 2.0))))
    im = photo.resize(size)
    buf = io.BytesIO()
    if fmt == "other":  # what else an encoded record may hold and Pillow reads
        im.save(buf, rng.choice(("GIF", "BMP", "WEBP", "PPM", "TGA")))
    elif fmt == "jpeg":
        im = im.convert(rng.choice(("RGB", "RGB", "RGB", "L", "CMYK")))
        im.save(buf, "JPEG", quality=rng.randint(5, 98), subsampling=rng.choice((0, 1, 2)),
                progressive=rng.random() < 0.3, optimize=rng.random() < 0.2)
    else:
        im.convert(rng.choice(("RGB", "L", "RGBA", "P", "LA", "I;16"))).save(buf, "PNG")
    return buf.getvalue()


def base_records(rng: random.Random, per_kind: int = 24,
                 other_formats: bool = False) -> list[tuple[str, Datum, bytes]]:
    """per_kind records of each kind; "other" only if other_formats (drawn after the rest,
    so that the other kinds, and the cases of a run without them, stay the same)."""
    nrng = np.random.default_rng(rng.randrange(2 ** 32))
    photos = [Image.open(path).convert("RGB") for path, _ in fetch()[:8]]
    bases = []
    for _ in range(per_kind):
        bases.append(("raw28", raw_datum(nrng.integers(0, 256, (1, 28, 28), dtype=np.uint8),
                                         rng.randrange(10))))
        c, h, w = rng.choice((1, 3)), rng.randint(1, 48), rng.randint(1, 48)
        bases.append(("raw3", raw_datum(nrng.integers(0, 256, (c, h, w), dtype=np.uint8),
                                        rng.randrange(1000))))
        for fmt in ("jpeg", "png"):
            data = _photo_bytes(rng, rng.choice(photos), fmt)
            bases.append((fmt, Datum(data=data, label=rng.randrange(1000), encoded=True)))
    for _ in range(per_kind if other_formats else 0):
        data = _photo_bytes(rng, rng.choice(photos), "other")
        bases.append(("other", Datum(data=data, label=rng.randrange(1000), encoded=True)))
    return [(kind, d, encode_datum(d)) for kind, d in bases]


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(d: Datum) -> list[bytes]:
    """The record as its encoded fields, one bytes object each (to reorder and damage)."""
    out = [bytes([n << 3]) + _varint(getattr(d, a)) for n, a in
           ((1, "channels"), (2, "height"), (3, "width")) if getattr(d, a)]
    if d.data:
        out.append(b"\x22" + _varint(len(d.data)) + d.data)
    out.append(b"\x28" + _varint(d.label))
    out += [b"\x35" + struct.pack("<f", f) for f in d.float_data]
    if d.encoded:
        out.append(b"\x38\x01")
    return out


# ------------------------------------------------------------------ Datum-level damage

def bitflip(rng, kind, d, raw):
    b = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        if b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def truncate(rng, kind, d, raw):
    return raw[:rng.randrange(len(raw))]


def length_field(rng, kind, d, raw):
    """The data field's declared length lies (short, long, huge, over 2^63)."""
    n = len(d.data)
    claim = rng.choice((0, 1, max(0, n - 1), n + 1, n + rng.randint(2, 10 ** 6), *HUGE_INTS[2:]))
    parts = _fields(d)
    pos = next((k for k, p in enumerate(parts) if p[:1] == b"\x22"), None)
    if pos is None:
        parts.insert(0, b"\x22" + _varint(claim))
    else:
        parts[pos] = b"\x22" + _varint(claim) + d.data
    return b"".join(parts)


def varint_overflow(rng, kind, d, raw):
    """A varint of 11 or more bytes (or one never ended) as a key, a length or a value."""
    long = b"\xff" * rng.randint(10, 40) + (b"\x01" if rng.random() < 0.7 else b"")
    parts = _fields(d)
    where = rng.randrange(len(parts) + 1)
    key = rng.choice((b"", b"\x08", b"\x28", b"\x22", b"\x10"))
    parts.insert(where, key + long)
    return b"".join(parts)


def wire_type(rng, kind, d, raw):
    """One field's key given another wire type (0-7: groups and the unused 6, 7 included)."""
    parts = _fields(d)
    k = rng.randrange(len(parts))
    num = parts[k][0] >> 3
    parts[k] = bytes([num << 3 | rng.choice([w for w in range(8) if w != parts[k][0] & 7])]) \
        + parts[k][1:]
    return b"".join(parts)


def random_bytes(rng, kind, d, raw):
    return bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 2, 5, 16, 100, 2000))))


def shape_fields(rng, kind, d, raw):
    """A well-formed record with absurd values: shapes and labels negative, zero, huge."""
    e = Datum(channels=d.channels, height=d.height, width=d.width, data=d.data,
              label=d.label, encoded=d.encoded)
    for _ in range(rng.randint(1, 3)):
        attr = rng.choice(("channels", "height", "width", "label", "encoded"))
        if attr == "encoded":
            e.encoded = not e.encoded
        else:
            value = rng.choice(HUGE_INTS + (1, 3, 28, 65535))
            setattr(e, attr, (value + 2 ** 31) % 2 ** 32 - 2 ** 31)  # as int32 on the wire
    return encode_datum(e)


def splice(rng, kind, d, raw):
    """Fields repeated, dropped or reordered (protobuf: the last value wins)."""
    parts = _fields(d)
    op = rng.choice(("repeat", "drop", "shuffle", "float"))
    if op == "repeat":
        parts.append(rng.choice(parts))
    elif op == "drop":
        parts.pop(rng.randrange(len(parts)))
    elif op == "shuffle":
        rng.shuffle(parts)
    else:  # packed float_data, sometimes not a multiple of 4 bytes
        n = rng.choice((3, 4, 8, 401))
        parts.append(b"\x32" + _varint(n) + bytes(n))
    return b"".join(parts)


# ------------------------------------------------------------------ image-level damage

def _with_image(d: Datum, data: bytes) -> bytes:
    return encode_datum(Datum(channels=d.channels, height=d.height, width=d.width, data=data,
                              label=d.label, encoded=True))


def image_bitflip(rng, kind, d, raw):
    b = bytearray(d.data)
    lo = 2 if rng.random() < 0.5 else min(len(b) - 1, 600)  # headers, or entropy data
    for _ in range(rng.randint(1, 16)):
        b[rng.randrange(lo, len(b))] ^= 1 << rng.randrange(8)
    return _with_image(d, bytes(b))


def image_truncate(rng, kind, d, raw):
    cut = rng.randrange(len(d.data))
    data = d.data[:cut]
    if kind == "jpeg" and rng.random() < 0.5:
        data += b"\xff\xd9"  # truncated entropy data that still ends with EOI
    return _with_image(d, data)


def image_header(rng, kind, d, raw):
    """The header claims another size: JPEG SOFn height/width; PNG IHDR with its CRC fixed,
    so the lie is well-formed (a 69-byte PNG can claim 20000 x 20000)."""
    h, w = rng.choice(CLAIMED_SIDES), rng.choice(CLAIMED_SIDES)
    if rng.random() < 0.3:
        h, w = rng.randint(0, 65535), rng.randint(0, 65535)
    b = bytearray(d.data)
    if kind == "png":
        if rng.random() < 0.5:  # keep the first IDAT only: tiny file, bomb header
            idat = b.find(b"IDAT") - 4
            end = idat + 12 + struct.unpack(">I", b[idat:idat + 4])[0]
            b = b[:end] + b"\x00\x00\x00\x00IEND\xaeB`\x82"
        b[16:24] = struct.pack(">II", w, h)
        b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
        return _with_image(d, bytes(b))
    if kind == "other":  # no size field this knows: the data cut short instead
        return _with_image(d, bytes(b[:rng.randrange(len(b))]))
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = b.find(marker)
        if at >= 0:
            b[at + 5:at + 9] = struct.pack(">HH", h, w)
            break
    if rng.random() < 0.5:  # a few hundred bytes: the scan data mostly gone
        b = b[:rng.randint(200, 800)] + b"\xff\xd9"
    return _with_image(d, bytes(b))


def image_garbage(rng, kind, d, raw):
    """An encoded record whose bytes are not an image, or start like one and then are not."""
    head = rng.choice((b"", b"\xff\xd8", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a",
                       b"BM", b"RIFF\x00\x00\x00\x00WEBP", d.data[:rng.randrange(1, 700)]))
    tail = bytes(rng.randrange(256) for _ in range(rng.choice((0, 10, 300, 3000))))
    return _with_image(d, head + tail)


def none(rng, kind, d, raw):
    return raw  # the control: a valid record must come out as a sample


MUTATIONS = {f.__name__: f for f in (none, bitflip, truncate, length_field, varint_overflow,
                                     wire_type, random_bytes, shape_fields, splice,
                                     image_bitflip, image_truncate, image_header, image_garbage)}
IMAGE_ONLY = {"image_bitflip", "image_truncate", "image_header", "image_garbage"}


def mutate(rng: random.Random, kind: str, d: Datum, raw: bytes) -> tuple[str, bytes]:
    # an encoded record gets an image-level mutation half the time (bombs, lying headers)
    if kind in ("jpeg", "png", "other") and rng.random() < 0.5:
        name = rng.choice(sorted(IMAGE_ONLY))
    else:
        name = rng.choice([n for n in MUTATIONS if n not in IMAGE_ONLY])
    return name, MUTATIONS[name](rng, kind, d, raw)
