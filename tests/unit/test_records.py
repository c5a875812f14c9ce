import numpy as np
import pytest

from hpcsgd.store.datum import Datum, RecordError, decode_datum, encode_datum, raw_datum


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


def _protobuf_datum_class():
    """caffe.Datum built from a descriptor at run time by the protobuf package: an encoder
    and decoder written independently of ours."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_datum_test.proto", package="caffe",
                                               syntax="proto2")
    msg = proto.message_type.add(name="Datum")
    for name, number, kind, label in [("channels", 1, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                      ("height", 2, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                      ("width", 3, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                      ("data", 4, F.TYPE_BYTES, F.LABEL_OPTIONAL),
                                      ("label", 5, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                      ("float_data", 6, F.TYPE_FLOAT, F.LABEL_REPEATED),
                                      ("encoded", 7, F.TYPE_BOOL, F.LABEL_OPTIONAL)]:
        msg.field.add(name=name, number=number, type=kind, label=label)
    msg.field[-1].default_value = "false"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.Datum"))


def test_records_written_by_protobuf_decode_and_ours_parse_in_protobuf():
    Datum_pb = _protobuf_datum_class()
    jpeg = bytes(range(256)) * 40
    theirs = Datum_pb(channels=3, height=375, width=500, data=jpeg, label=981, encoded=True,
                      float_data=[0.5, -1.25])
    ours = decode_datum(theirs.SerializeToString())
    assert ours == Datum(channels=3, height=375, width=500, data=jpeg, label=981,
                         float_data=[0.5, -1.25], encoded=True)
    back = Datum_pb.FromString(encode_datum(ours))
    assert (back.channels, back.height, back.width, back.label, back.encoded) == \
        (3, 375, 500, 981, True)
    assert back.data == jpeg and list(back.float_data) == [0.5, -1.25]
    # a raw record and a negative label, both directions
    raw = Datum_pb(channels=1, height=2, width=2, data=b"\x00\x01\x02\x03", label=-7)
    assert decode_datum(raw.SerializeToString()).pixels().tolist() == [[[0, 1], [2, 3]]]
    assert Datum_pb.FromString(encode_datum(Datum(label=-7))).label == -7
