"""Generated WebSocket frames over both protocols: truncated offset tables, wrong and huge
counts, bytes that are not UTF-8, wrong types in every field. After each case the same
connection, a new connection and the kernel still work."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico.kernels import wire
from portico_testing import KernelClient, Server, start_server

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

FIELDS = ("header", "parent_header", "metadata", "content", "channel", "buffers")
scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20)
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def json_message(draw: st.DrawFn) -> bytes | str:
    """A JSON-protocol message with any field missing, of the wrong type, or right."""
    msg: dict[str, Any] = {
        "header": {"msg_id": "f", "msg_type": "kernel_info_request", "session": "s", "username": "u", "version": "5.3"},
        "parent_header": {},
        "metadata": {},
        "content": {},
        "channel": "shell",
        "buffers": [],
    }
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            msg.pop(name, None)
        else:
            msg[name] = draw(junk)
    if draw(st.booleans()):
        msg["header"] = (
            {
                **msg["header"],
                **draw(st.dictionaries(st.sampled_from(["msg_id", "msg_type", "session", "date"]), junk, max_size=2)),
            }
            if isinstance(msg.get("header"), dict)
            else msg.get("header")
        )
    text = orjson.dumps(msg)
    kind = draw(st.sampled_from(["text", "truncated", "binary"]))
    if kind == "text":
        return text.decode()
    if kind == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))].decode(errors="ignore")
    return draw(binary_with_table(text, ">I"))


@st.composite
def binary_with_table(draw: st.DrawFn, body: bytes, fmt: str) -> bytes:
    """A binary frame whose offset table may lie: wrong count, huge count, offsets past the end,
    backwards, truncated; a body that may not be UTF-8."""
    size = struct.calcsize(fmt)
    huge = 2 ** (8 * size - 1) - 1
    count = draw(st.sampled_from([0, 1, 2, 6, 7, huge]) | st.integers(0, 12))
    offsets = draw(st.lists(st.integers(0, huge) | st.integers(0, 64 + len(body)), max_size=8))
    if draw(st.booleans()):
        body = draw(st.binary(max_size=64)) + body
    table = struct.pack(f"{fmt[0]}{1 + len(offsets)}{fmt[1]}", count, *offsets)
    frame = table + body
    return frame[: draw(st.integers(0, len(frame)))] if draw(st.booleans()) else frame


@st.composite
def v1_message(draw: st.DrawFn) -> bytes | str:
    channel = draw(st.sampled_from([b"shell", b"control", b"stdin", b"iopub", b"nope", b"\xff\xfe"]))
    parts = [orjson.dumps(draw(junk)) if draw(st.booleans()) else draw(st.binary(max_size=16)) for _ in range(4)]
    kind = draw(st.sampled_from(["good table", "lying table", "text"]))
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "good table":
        return wire.to_v1(channel, parts)
    return draw(binary_with_table(channel + b"".join(parts), "<Q"))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_server()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def kernel(server: Server, loop: asyncio.AbstractEventLoop) -> str:
    async def start() -> str:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}api/kernels", json={}, headers=server.headers) as r:
                return str((await r.json())["id"])

    return loop.run_until_complete(start())


async def still_works(http: aiohttp.ClientSession, server: Server, kernel: str, client: KernelClient) -> None:
    for c in (client, await KernelClient.connect(http, server, kernel, v1=not client.v1)):
        msg_id = await c.request("kernel_info_request", {})
        reply = await c.next(
            lambda m, msg_id=msg_id: m["parent_header"].get("msg_id") == msg_id and m["channel"] == "shell",
            timeout=30,
        )
        assert reply["header"]["msg_type"] == "kernel_info_reply"
    reply, _ = await client.execute("1 + 1", timeout=30)
    assert reply["content"]["status"] == "ok"


def fuzz(server: Server, kernel: str, loop: asyncio.AbstractEventLoop, v1: bool, frames: list[bytes | str]) -> None:
    async def case() -> None:
        async with aiohttp.ClientSession() as http:
            client = await KernelClient.connect(http, server, kernel, v1=v1)
            for frame in frames:
                await (client.ws.send_str(frame) if isinstance(frame, str) else client.ws.send_bytes(frame))
            await still_works(http, server, kernel, client)
            assert not client.ws.closed
            await client.close()

    loop.run_until_complete(asyncio.wait_for(case(), 60))


FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@FUZZ
@given(frames=st.lists(json_message(), min_size=1, max_size=5))
def test_json_protocol_frames(
    server: Server, kernel: str, loop: asyncio.AbstractEventLoop, frames: list[bytes | str]
) -> None:
    fuzz(server, kernel, loop, False, frames)


@FUZZ
@given(frames=st.lists(v1_message(), min_size=1, max_size=5))
def test_v1_protocol_frames(
    server: Server, kernel: str, loop: asyncio.AbstractEventLoop, frames: list[bytes | str]
) -> None:
    fuzz(server, kernel, loop, True, frames)
