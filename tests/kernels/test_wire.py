import struct

import orjson
import pytest

from portico.kernels import wire

PARTS = [b'{"msg_id":"a","msg_type":"comm_msg"}', b"{}", b"{}", b'{"data":{}}']


def test_v1_round_trip_keeps_parts_and_buffers() -> None:
    frame = wire.to_v1(b"iopub", PARTS + [b"\x00\x01", b""])
    assert struct.unpack_from("<Q", frame)[0] == 8
    assert wire.from_v1(frame) == ("iopub", PARTS + [b"\x00\x01", b""])


def test_v1_layout_matches_jupyter_server() -> None:
    frame = wire.to_v1(b"shell", PARTS)
    n = 6
    offsets = struct.unpack_from("<6Q", frame, 8)
    assert offsets[0] == 8 * (n + 1) and offsets[-1] == len(frame)
    assert frame[offsets[0] : offsets[1]] == b"shell"


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x01" * 7,
        struct.pack("<Q", 3) + b"\x00" * 24,
        struct.pack("<Q", 6) + b"\x00" * 8,
        struct.pack("<7Q", 6, 56, 60, 70, 65, 80, 90),
    ],
)
def test_v1_rejects_truncated_or_inconsistent_frames(bad: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.from_v1(bad)


def test_json_without_buffers_is_text_with_top_level_ids() -> None:
    data, binary = wire.to_json(b"iopub", PARTS, orjson.loads(PARTS[0]))
    assert not binary
    msg = orjson.loads(data)
    assert msg["channel"] == "iopub" and msg["msg_id"] == "a" and msg["msg_type"] == "comm_msg"
    assert msg["buffers"] == [] and msg["content"] == {"data": {}}


def test_json_with_buffers_uses_the_u32_offset_table() -> None:
    data, binary = wire.to_json(b"iopub", PARTS + [b"xyz", b"\xff"], orjson.loads(PARTS[0]))
    assert binary
    n, first = struct.unpack_from("!2I", data)
    assert n == 3 and first == 16
    msg, buffers = wire.from_json_binary(data)
    assert buffers == [b"xyz", b"\xff"] and "buffers" not in msg


@pytest.mark.parametrize("bad", [b"\x00\x00", struct.pack("!I", 5) + b"xx", struct.pack("!2I", 1, 3) + b"{}"])
def test_json_binary_rejects_truncated_frames(bad: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.from_json_binary(bad)


def test_signatures_verify_and_detect_tampering() -> None:
    signer = wire.Signer(b"key")
    frames = signer.frames(PARTS)
    signature, parts = wire.split_zmq([b"topic", *frames])
    assert signer.verify(signature, parts)
    assert not signer.verify(signature, [b"{}", *parts[1:]])


@pytest.mark.parametrize(
    "msg",
    [{}, {"header": "x"}, {"header": {"msg_type": "x"}}, {"header": {"msg_id": "1", "msg_type": "x"}, "content": []}],
)
def test_client_json_needs_a_header_and_object_parts(msg: dict[str, object]) -> None:
    with pytest.raises(wire.WireError):
        wire.parts_from_json(msg)
