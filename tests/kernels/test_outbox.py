"""The outbox's policy: queue, coalesce stream output under pressure, then drop the client."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from portico.kernels import wire
from portico.kernels.outbox import Outbox
from portico_testing import eventually


class SlowSocket:
    """Stands in for a WebSocket whose client reads only when the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[bytes] = []
        self.closed_with: tuple[int, bytes] | None = None

    async def send_frame(self, data: bytes, opcode: Any) -> None:
        await self.gate.wait()
        self.sent.append(data)

    async def close(self, code: int, message: bytes) -> None:
        self.closed_with = (code, message)


def texts_sent(ws: SlowSocket) -> list[str]:
    return [orjson.loads(wire.from_v1(frame)[1][3])["text"] for frame in ws.sent]


def stream(text: str, parent: dict[str, Any], name: str = "stdout") -> list[bytes]:
    return wire.build("stream", {"name": name, "text": text}, parent).parts


def encode(parts: list[bytes], seq: int) -> tuple[bytes, bool]:
    return wire.to_v1(b"iopub", parts), True


async def test_stream_output_merges_past_half_the_limit_and_nothing_is_lost() -> None:
    ws = SlowSocket()
    box = Outbox(ws, 4000, lambda: None, encode)  # type: ignore[arg-type]
    box.start()
    parent = {"msg_id": "p"}
    texts = [f"line {i}\n" for i in range(60)]
    for i, text in enumerate(texts, 1):
        parts = stream(text, parent)
        box.put(*encode(parts, i), i, parts)
    assert not box.overflowed
    ws.gate.set()
    await eventually(lambda: "".join(texts_sent(ws)) == "".join(texts), "every line sent")
    received = texts_sent(ws)
    assert len(received) < len(texts)  # merged
    assert box.last_seq == 60


async def test_different_streams_or_parents_do_not_merge() -> None:
    ws = SlowSocket()
    box = Outbox(ws, 2400, lambda: None, encode)  # type: ignore[arg-type]
    box.start()
    msgs = [
        stream("a" * 200, {"msg_id": "1"}),
        stream("b" * 200, {"msg_id": "1"}, "stderr"),
        stream("c" * 200, {"msg_id": "2"}),
        stream("d" * 10, {"msg_id": "2"}),
    ]
    for i, parts in enumerate(msgs, 1):
        box.put(*encode(parts, i), i, parts)
    ws.gate.set()
    await eventually(lambda: sum(map(len, texts_sent(ws))) == 610, "every message sent")
    texts = texts_sent(ws)
    assert not box.overflowed
    assert texts == ["a" * 200, "b" * 200, "c" * 200 + "d" * 10]


async def test_past_the_limit_the_client_is_dropped_with_4008() -> None:
    ws = SlowSocket()
    box = Outbox(ws, 1000, lambda: None, encode)  # type: ignore[arg-type]
    box.start()
    for i in range(20):
        parts = wire.build("display_data", {"data": {"text/plain": "x" * 100}}).parts
        box.put(*encode(parts, i + 1), i + 1, parts)
    await eventually(lambda: ws.closed_with is not None, "the client's disconnection")
    assert box.overflowed and ws.closed_with is not None and ws.closed_with[0] == 4008
    box.stop()
