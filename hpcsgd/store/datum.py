"""Caffe ``Datum`` records: the one place that knows the on-disk sample format.

Intel Caffe and NVCaffe ImageNet LMDBs hold one serialized ``caffe.Datum`` per image:

    message Datum {
      optional int32 channels = 1;  optional int32 height = 2;  optional int32 width = 3;
      optional bytes data = 4;      // raw uint8 pixels (C x H x W) or, if encoded, JPEG/PNG bytes
      optional int32 label = 5;
      repeated float float_data = 6;
      optional bool encoded = 7 [default = false];
    }

We speak the protobuf wire format directly (a few dozen lines, no generated code), so a site's
existing LMDBs are read as they are and ours are readable by Caffe.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np


class RecordError(ValueError):
    """A record that cannot be decoded; the caller names the key and counts it."""


@dataclass
class Datum:
    channels: int = 0
    height: int = 0
    width: int = 0
    data: bytes = b""
    label: int = 0
    float_data: list[float] = field(default_factory=list)
    encoded: bool = False

    def pixels(self) -> np.ndarray:
        """Raw records as a (C, H, W) uint8 array (Caffe's layout). Not for encoded records."""
        if self.encoded:
            raise RecordError("pixels() of an encoded record: decode the image bytes instead")
        expected = self.channels * self.height * self.width
        if len(self.data) != expected:
            raise RecordError(f"raw data holds {len(self.data)} bytes, shape "
                              f"{self.channels}x{self.height}x{self.width} needs {expected}")
        return np.frombuffer(self.data, np.uint8).reshape(self.channels, self.height, self.width)


_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_INT_FIELDS = {1: "channels", 2: "height", 3: "width", 5: "label"}


def _put_varint(out: bytearray, value: int) -> None:
    value &= (1 << 64) - 1  # negative int32 go out as 10-byte two's complement, as protobuf does
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise RecordError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _as_int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def encode_datum(d: Datum) -> bytes:
    out = bytearray()
    for num, name in ((1, "channels"), (2, "height"), (3, "width")):
        if getattr(d, name):
            _put_varint(out, num << 3 | _VARINT)
            _put_varint(out, getattr(d, name))
    if d.data:
        _put_varint(out, 4 << 3 | _BYTES)
        _put_varint(out, len(d.data))
        out += d.data
    _put_varint(out, 5 << 3 | _VARINT)  # label always written: Caffe readers expect it
    _put_varint(out, d.label)
    for f in d.float_data:  # proto2 repeated scalars are unpacked by default
        _put_varint(out, 6 << 3 | _FIXED32)
        out += struct.pack("<f", f)
    if d.encoded:
        _put_varint(out, 7 << 3 | _VARINT)
        out.append(1)
    return bytes(out)


def decode_datum(raw: bytes | memoryview) -> Datum:
    buf = memoryview(raw)
    d = Datum()
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _get_varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _get_varint(buf, pos)
            if num in _INT_FIELDS:
                setattr(d, _INT_FIELDS[num], _as_int32(value))
            elif num == 7:
                d.encoded = bool(value)
        elif wire == _BYTES:
            length, pos = _get_varint(buf, pos)
            if pos + length > end:
                raise RecordError(f"field {num} claims {length} bytes, {end - pos} remain")
            chunk = buf[pos:pos + length]
            pos += length
            if num == 4:
                d.data = bytes(chunk)
            elif num == 6:  # packed float_data (allowed by the wire format)
                if length % 4:
                    raise RecordError("packed float_data length not a multiple of 4")
                d.float_data.extend(struct.unpack(f"<{length // 4}f", chunk))
        elif wire == _FIXED32:
            if pos + 4 > end:
                raise RecordError("truncated fixed32 field")
            if num == 6:
                d.float_data.append(struct.unpack_from("<f", buf, pos)[0])
            pos += 4
        elif wire == _FIXED64:
            pos += 8
        else:
            raise RecordError(f"field {num} has unsupported wire type {wire}")
    if pos != end:
        raise RecordError("record ends inside a field")
    if d.channels < 0 or d.height < 0 or d.width < 0:
        raise RecordError(f"negative shape {d.channels}x{d.height}x{d.width}")
    return d


def raw_datum(pixels_chw: np.ndarray, label: int) -> Datum:
    """A raw (not encoded) record from a (C, H, W) uint8 array."""
    if pixels_chw.dtype != np.uint8 or pixels_chw.ndim != 3:
        raise ValueError(f"expected a (C, H, W) uint8 array, got {pixels_chw.dtype} "
                         f"{pixels_chw.shape}")
    c, h, w = pixels_chw.shape
    return Datum(channels=c, height=h, width=w, data=pixels_chw.tobytes(), label=int(label))


def record_key(index: int) -> bytes:
    """Keys sort in index order, as Caffe's convert_imageset writes them (zero-padded)."""
    return f"{index:08d}".encode()
