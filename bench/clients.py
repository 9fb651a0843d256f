"""Kernel clients for the benchmark: over a gateway's WebSocket (either protocol), or over
ZeroMQ directly with jupyter_client (the limit a gateway can approach)."""

from __future__ import annotations

import asyncio
import os
import struct
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from jupyter_client.manager import AsyncKernelManager

V1 = "v1.kernel.websocket.jupyter.org"
IPC_DIR = tempfile.mkdtemp(prefix="bench-")


@dataclass
class Pending:
    reply: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    outputs: int = 0  # display_data / stream / execute_result messages
    output_bytes: int = 0

    async def done(self) -> None:
        await self.reply.wait()
        await self.idle.wait()


class Kernel:
    """What the scenarios need of a kernel connection."""

    pending: dict[str, Pending]

    def _dispatch(self, channel: str, msg_type: str, parent_id: str | None, content: Any, size: int) -> None:
        pending = self.pending.get(parent_id or "")
        if pending is None:
            return
        if channel == "shell":
            pending.reply.set()
        elif channel == "iopub":
            if msg_type == "status":
                if content().get("execution_state") == "idle":
                    pending.idle.set()
            elif msg_type in ("display_data", "stream", "execute_result"):
                pending.outputs += 1
                pending.output_bytes += size

    async def execute(self, code: str) -> Pending:
        pending = await self.send(
            "execute_request",
            {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
        )
        await pending.done()
        return pending

    async def send(self, msg_type: str, content: dict[str, Any]) -> Pending:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def _header(msg_type: str, session: str) -> dict[str, Any]:
    return {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "session": session,
        "username": "bench",
        "date": "2026-01-01T00:00:00.000000Z",
        "version": "5.3",
    }


class WebSocketKernel(Kernel):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.v1 = ws.protocol == V1
        self.session = uuid.uuid4().hex
        self.pending = {}
        self.messages = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, http: aiohttp.ClientSession, base: str, headers: dict[str, str], kernel_id: str, v1: bool
    ) -> WebSocketKernel:
        url = base.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
        ws = await http.ws_connect(url, protocols=[V1] if v1 else [], headers=headers, max_msg_size=0, compress=0)
        if v1 and ws.protocol != V1:
            await ws.close()
            raise RuntimeError(f"{base} did not accept the v1 protocol")
        return cls(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            self.messages += 1
            data = msg.data
            if self.v1:
                n = struct.unpack_from("<Q", data)[0]
                offsets = struct.unpack_from(f"<{n}Q", data, 8)
                channel = data[offsets[0] : offsets[1]].decode()
                header = orjson.loads(data[offsets[1] : offsets[2]])
                parent = orjson.loads(data[offsets[2] : offsets[3]])
                raw = data[offsets[4] : offsets[5]]
                self._dispatch(
                    channel, header["msg_type"], parent.get("msg_id"), lambda raw=raw: orjson.loads(raw), len(data)
                )
            else:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    n = struct.unpack_from("!I", data)[0]
                    first, second = struct.unpack_from("!2I", data, 4) if n > 1 else (4 * (n + 1), len(data))
                    body = orjson.loads(data[first:second])
                else:
                    body = orjson.loads(data)
                content = body.get("content", {})
                self._dispatch(
                    body["channel"],
                    body["header"]["msg_type"],
                    body["parent_header"].get("msg_id"),
                    lambda content=content: content,
                    len(data),
                )

    async def send(self, msg_type: str, content: dict[str, Any]) -> Pending:
        header = _header(msg_type, self.session)
        pending = self.pending[header["msg_id"]] = Pending()
        if self.v1:
            parts = [orjson.dumps(header), b"{}", b"{}", orjson.dumps(content)]
            channel = b"shell"
            offsets = [8 * 7, 8 * 7 + len(channel)]
            for part in parts:
                offsets.append(offsets[-1] + len(part))
            await self.ws.send_bytes(struct.pack("<7Q", 6, *offsets) + channel + b"".join(parts))
        else:
            await self.ws.send_str(
                orjson.dumps(
                    {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
                ).decode()
            )
        return pending

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


class DirectKernel(Kernel):
    """A kernel started and driven in-process over ZeroMQ: no web server at all."""

    def __init__(self, km: AsyncKernelManager, kc: Any) -> None:
        self.km = km
        self.kc = kc
        self.pending = {}
        self._readers = [asyncio.create_task(self._read("shell")), asyncio.create_task(self._read("iopub"))]

    @classmethod
    async def start(cls) -> DirectKernel:
        # over ipc, as Portico reaches its kernels by default: the same transport, no web server
        connection_file = os.path.join(IPC_DIR, f"k-{uuid.uuid4().hex[:12]}.json")
        km = AsyncKernelManager(kernel_name="python3", transport="ipc", connection_file=connection_file)
        await km.start_kernel(env={**os.environ})
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)  # before our readers take the channels' messages
        return cls(km, kc)

    async def _read(self, channel: str) -> None:
        get = self.kc.get_shell_msg if channel == "shell" else self.kc.get_iopub_msg
        while True:
            msg = await get()
            self._dispatch(
                channel,
                msg["msg_type"],
                msg["parent_header"].get("msg_id"),
                lambda msg=msg: msg["content"],
                sum(len(str(v)) for v in msg["content"].values()) if channel == "iopub" else 0,
            )

    async def send(self, msg_type: str, content: dict[str, Any]) -> Pending:
        msg = self.kc.session.msg(msg_type, content)
        pending = self.pending[msg["header"]["msg_id"]] = Pending()
        self.kc.shell_channel.send(msg)
        return pending

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        self.kc.stop_channels()
        await self.km.shutdown_kernel(now=True)
