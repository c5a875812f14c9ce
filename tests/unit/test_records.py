import numpy as np
import pytest

from hpcsgd.records import Datum, RecordError, decode_datum, encode_datum, raw_datum


def test_wire_bytes_match_protobuf_encoding_worked_by_hand():
    d = Datum(channels=3, height=2, width=1, data=b"\x01\x02", label=300, encoded=True)
    # field 1 varint 3 | field 2 varint 2 | field 3 varint 1 | field 4 len 2 | field 5 300
    # (300 = 0xAC 0x02 as a varint) | field 7 true
    assert encode_datum(d) == bytes([0x08, 3, 0x10, 2, 0x18, 1, 0x22, 2, 1, 2,
                                     0x28, 0xAC, 0x02, 0x38, 1])


@pytest.mark.parametrize("datum", [
    Datum(channels=1, height=28, width=28, data=bytes(range(256)) * 3 + bytes(16), label=9),
    Datum(data=b"\xff\xd8jpeg", label=0, encoded=True),
    Datum(channels=2, height=1, width=1, data=b"ab", label=-1, float_data=[1.5, -2.25]),
])
def test_round_trip(datum):
    assert decode_datum(encode_datum(datum)) == datum


def test_negative_label_is_a_ten_byte_varint_and_decodes():
    raw = encode_datum(Datum(label=-1))
    assert raw == bytes([0x28]) + b"\xff" * 9 + b"\x01"
    assert decode_datum(raw).label == -1


def test_packed_float_data_and_unknown_fields_are_accepted():
    packed = bytes([0x32, 8]) + np.array([1.0, 2.0], "<f4").tobytes()
    unknown = bytes([0x48, 5, 0x52, 1, 0x00])  # field 9 varint, field 10 bytes
    d = decode_datum(bytes([0x28, 7]) + packed + unknown)
    assert d.label == 7 and d.float_data == [1.0, 2.0]


@pytest.mark.parametrize("raw", [b"\x22\x10abc", b"\x08", b"\x2d\x00", b"\x0f\x00"])
def test_corrupt_bytes_raise_record_error(raw):
    with pytest.raises(RecordError):
        decode_datum(raw)


def test_raw_pixels_are_chw():
    img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(decode_datum(encode_datum(raw_datum(img, 1))).pixels(), img)
    with pytest.raises(RecordError, match="needs 24"):
        Datum(channels=2, height=3, width=4, data=b"short").pixels()
