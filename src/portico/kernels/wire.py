"""Jupyter message framing and signing: bytes in, bytes out.

ZeroMQ:   [identities..., b"<IDS|MSG>", hmac_hex, header, parent_header, metadata, content, buffers...]
v1 WS:    u64le n = 6 + len(buffers); n u64le offsets (channel, header, parent, metadata, content,
          each buffer, end); then the channel name and the parts exactly as on ZeroMQ.
JSON WS:  a text frame {header, parent_header, metadata, content, buffers: [], channel, msg_id,
          msg_type}; with buffers, a binary frame: u32be n = 1 + len(buffers), n u32be offsets,
          the JSON (without "buffers"), then the buffers.

Nothing here parses JSON except where a part must be read (the JSON protocol from clients).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import orjson

DELIM = b"<IDS|MSG>"
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CHANNELS = ("shell", "control", "stdin")  # what a client may send on; iopub is kernel to client only
_U64 = struct.Struct("<Q")


class WireError(ValueError):
    """A message that cannot be framed or read: the text says what is wrong with it."""


class Signer:
    """HMAC-SHA256 over the four JSON parts with the connection file's key."""

    def __init__(self, key: bytes) -> None:
        self._mac = hmac.new(key, digestmod=hashlib.sha256) if key else None

    def sign(self, parts: Sequence[bytes]) -> bytes:
        if self._mac is None:
            return b""
        mac = self._mac.copy()
        for part in parts[:4]:
            mac.update(part)
        return mac.hexdigest().encode()

    def verify(self, signature: bytes, parts: Sequence[bytes]) -> bool:
        return self._mac is None or hmac.compare_digest(signature, self.sign(parts))

    def frames(self, parts: Sequence[bytes]) -> list[bytes]:
        """ZeroMQ frames for parts (four JSON parts, then buffers), signed."""
        return [DELIM, self.sign(parts), *parts]


def split_zmq(frames: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
    """(signature, parts) of a ZeroMQ message; identities are dropped."""
    for i, frame in enumerate(frames):
        if frame == DELIM:
            parts = list(frames[i + 2 :])
            if len(parts) < 4:
                raise WireError("a message from the kernel has fewer than four parts")
            return frames[i + 1], parts
    raise WireError("a message from the kernel has no <IDS|MSG> delimiter")


# v1.kernel.websocket.jupyter.org --------------------------------------------------------
def to_v1(channel: bytes, parts: Sequence[bytes]) -> bytes:
    n = 2 + len(parts)
    offsets = [8 * (n + 1)]
    offsets.append(offsets[0] + len(channel))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return b"".join([struct.pack(f"<{n + 1}Q", n, *offsets), channel, *parts])


def from_v1(data: bytes) -> tuple[str, list[bytes]]:
    if len(data) < 8:
        raise WireError("binary frame too short for the v1 offset table")
    (n,) = _U64.unpack_from(data)
    if n < 6 or len(data) < 8 * (n + 1):
        raise WireError(f"v1 frame: {n} offsets announced; at least 6 needed and the frame must hold them")
    offsets = struct.unpack_from(f"<{n}Q", data, 8)
    if offsets[0] != 8 * (n + 1) or offsets[-1] != len(data) or any(a > b for a, b in pairwise(offsets)):
        raise WireError("v1 frame: offsets are out of order or do not match the frame length")
    try:
        channel = data[offsets[0] : offsets[1]].decode()
    except UnicodeDecodeError:
        raise WireError("v1 frame: the channel name is not UTF-8") from None
    return channel, [data[a:b] for a, b in pairwise(offsets[1:])]


# JSON protocol ----------------------------------------------------------------------------
def to_json(channel: bytes, parts: Sequence[bytes], header: dict[str, Any]) -> tuple[bytes, bool]:
    """(payload, is_binary): the JSON text assembled from the raw parts, no re-encoding."""
    tail = b',"channel":"%s","msg_id":%s,"msg_type":%s' % (
        channel,
        orjson.dumps(header.get("msg_id")),
        orjson.dumps(header.get("msg_type")),
    )
    body = [
        b'{"header":',
        parts[0],
        b',"parent_header":',
        parts[1],
        b',"metadata":',
        parts[2],
        b',"content":',
        parts[3],
    ]
    buffers = parts[4:]
    if not buffers:
        return b"".join([*body, b',"buffers":[]', tail, b"}"]), False
    text = b"".join([*body, tail, b"}"])
    n = 1 + len(buffers)
    offsets = [4 * (n + 1)]
    offsets.append(offsets[0] + len(text))
    for buf in buffers[:-1]:
        offsets.append(offsets[-1] + len(buf))
    return b"".join([struct.pack(f"!{n + 1}I", n, *offsets), text, *buffers]), True


def from_json_binary(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    if len(data) < 8:
        raise WireError("binary frame too short for the offset table")
    (n,) = struct.unpack_from("!I", data)
    if n < 1 or len(data) < 4 * (n + 1):
        raise WireError(f"binary frame: {n} offsets announced but the frame cannot hold them")
    offsets = [*struct.unpack_from(f"!{n}I", data, 4), len(data)]
    if offsets[0] != 4 * (n + 1) or any(a > b for a, b in pairwise(offsets)):
        raise WireError("binary frame: offsets are out of order or beyond the frame")
    msg = parse_json(data[offsets[0] : offsets[1]])
    return msg, [data[a:b] for a, b in pairwise(offsets[1:])]


def parse_json(data: bytes | str) -> dict[str, Any]:
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise WireError(f"message is not valid JSON: {e}") from None
    if not isinstance(msg, dict):
        raise WireError("message must be a JSON object")
    return msg


def parts_from_json(msg: dict[str, Any]) -> list[bytes]:
    """The four JSON parts of a client's message, each serialized once."""
    header = msg.get("header")
    if not isinstance(header, dict) or not header.get("msg_type") or not header.get("msg_id"):
        raise WireError("message has no header with msg_id and msg_type")
    parts = []
    for key in ("parent_header", "metadata", "content"):
        value = msg.get(key)
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise WireError(f"{key} must be an object")
        parts.append(orjson.dumps(value))
    return [orjson.dumps(header), *parts]


def with_seq(parts: list[bytes], seq: int) -> list[bytes]:
    """The parts with the journal sequence number spliced into the metadata, unparsed."""
    metadata = parts[2].strip()
    tag = b'{"portico_seq":%d' % seq
    metadata = tag + b"}" if metadata in (b"{}", b"") else tag + b"," + metadata[1:]
    return [parts[0], parts[1], metadata, *parts[3:]]


# messages Portico itself sends -------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Built:
    header: dict[str, Any]
    parts: list[bytes]


def build(
    msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None = None, session: str = "portico"
) -> Built:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "username": "portico",
        "session": session,
        "date": now_iso(),
        "version": "5.3",
    }
    return Built(header, [orjson.dumps(header), orjson.dumps(parent or {}), b"{}", orjson.dumps(content)])
