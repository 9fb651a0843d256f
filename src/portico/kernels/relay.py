"""ZeroMQ <-> WebSocket for one kernel.

One iopub SUB socket per kernel, fanned out to every client.  Each client connection gets
its own DEALER sockets for shell, control and stdin; shell and stdin share an identity so
the kernel's input_request reaches the client that ran the code.  The v1 protocol relays
frames as they came; the JSON protocol is assembled from the raw frames (only the header
is read).  Every client has a bounded outbox: a client that cannot keep up is disconnected
with close code 4008 instead of growing the server's memory or slowing the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import orjson
import zmq
import zmq.asyncio
from aiohttp import WSMsgType, web

from . import wire

log = logging.getLogger("portico")

CLOSE_REPLACED = 4000  # a newer connection with the same session_id took over
CLOSE_TOO_SLOW = 4008  # the client did not read fast enough: its outbox overflowed
CLOSE_KERNEL_GONE = 1001  # the kernel was shut down or culled

Stats = Counter[tuple[str, str]]  # (channel, "to_kernel" | "from_kernel") -> messages


class Outbox:
    """What is waiting to be written to one WebSocket, bounded in bytes.

    Past the bound the client is dropped (close code 4008, or the connection aborted if it
    will not even take the close frame) rather than slowing the kernel's other clients.
    """

    def __init__(self, ws: web.WebSocketResponse, limit: int, abort: Callable[[], None]) -> None:
        self.ws = ws
        self.limit = limit
        self.abort = abort
        self.pending = 0
        self.overflowed = False
        self._queue: deque[tuple[bytes, WSMsgType]] = deque()
        self._ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._dropper: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._writer = asyncio.create_task(self._write())
        return self._writer

    def put(self, data: bytes, binary: bool) -> None:
        if self.overflowed:
            return
        self.pending += len(data)
        if self.pending > self.limit:
            self.overflowed = True
            self._dropper = asyncio.create_task(self._drop())
            return
        self._queue.append((data, WSMsgType.BINARY if binary else WSMsgType.TEXT))
        self._ready.set()

    async def _write(self) -> None:
        queue, ready, send = self._queue, self._ready, self.ws.send_frame
        try:
            while True:
                if not queue:
                    ready.clear()
                    await ready.wait()
                    continue
                data, opcode = queue.popleft()
                self.pending -= len(data)
                await send(data, opcode)
        except (ConnectionError, RuntimeError):
            pass  # the client went away; its receive loop ends the connection

    async def _drop(self) -> None:
        log.warning("dropping a WebSocket client %d bytes behind (client_buffer_limit %d)", self.pending, self.limit)
        self._queue.clear()
        await self.close(CLOSE_TOO_SLOW, "client too slow: output buffer limit reached")

    async def close(self, code: int, reason: str) -> None:
        """Close with a code and reason; a client that will not take even that is cut off.

        aiohttp's writers share one drain future, so a close can also end by cancellation
        when the connection's other tasks stop: whatever ends it, an unfinished close aborts.
        """
        closed = False
        try:
            async with asyncio.timeout(1):
                await self.ws.close(code=code, message=reason.encode())
            closed = True
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if not closed:
                self.abort()


class Client:
    """One WebSocket connection to a kernel and its own shell, control and stdin sockets."""

    def __init__(self, relay: KernelRelay, ws: web.WebSocketResponse, session_id: str,
                 abort: Callable[[], None]) -> None:
        self.relay = relay
        self.ws = ws
        self.session_id = session_id
        self.v1 = ws.ws_protocol == wire.V1_PROTOCOL
        self.outbox = Outbox(ws, relay.client_limit, abort)
        identity = uuid.uuid4().hex.encode()
        self.sockets = {name: relay.connect(zmq.DEALER, name, identity) for name in wire.CHANNELS}
        self.tasks: list[asyncio.Task[None]] = []

    def send(self, channel: bytes, parts: list[bytes]) -> None:
        if self.v1:
            self.outbox.put(wire.to_v1(channel, parts), True)
        else:
            self.outbox.put(*wire.to_json(channel, parts, orjson.loads(parts[0])))

    def send_error(self, text: str, channel: str = "shell", parent: dict[str, Any] | None = None) -> None:
        """Tell this client (only) that its message was refused, and why."""
        built = wire.build("portico_error", {"ename": "BadMessage", "evalue": text}, parent)
        self.send(channel.encode(), built.parts)

    async def pump(self, channel: str) -> None:
        sock, relay, name = self.sockets[channel], self.relay, channel.encode()
        while True:
            frames = await sock.recv_multipart()
            parts = relay.accept(frames, channel)
            if parts is None:
                continue
            try:
                self.send(name, parts)
            except Exception:
                log.exception("failed to relay a %s message", channel)

    def start(self) -> None:
        self.tasks = [self.outbox.start()]
        self.tasks += [asyncio.create_task(self.pump(c)) for c in wire.CHANNELS]

    async def receive(self) -> None:
        """Read the client's messages until it goes, relaying each to the kernel."""
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                self.from_client(msg.data, text=True)
            elif msg.type == WSMsgType.BINARY:
                self.from_client(msg.data, text=False)

    def from_client(self, data: Any, text: bool) -> None:
        parent = None
        try:
            if self.v1:
                if text:
                    raise wire.WireError("text frame on the v1 protocol: every frame must be binary")
                channel, parts = wire.from_v1(data)
                if not parts[0].startswith(b"{"):
                    raise wire.WireError("message has no header")
            else:
                msg, buffers = (wire.parse_json(data), []) if text else wire.from_json_binary(data)
                parent = msg.get("header") if isinstance(msg.get("header"), dict) else None
                channel = msg.get("channel")  # type: ignore[assignment]
                parts = wire.parts_from_json(msg) + buffers
            if channel not in wire.CHANNELS:
                raise wire.WireError(f"unknown channel {channel!r}; use shell, control or stdin")
        except wire.WireError as e:
            self.send_error(str(e), parent=parent)
            return
        self.relay.to_kernel(self.sockets[channel], channel, parts)

    async def close(self, code: int, message: str) -> None:
        await self.outbox.close(code, message)
        self.stop()

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for sock in self.sockets.values():
            sock.close(linger=0)


class KernelRelay:
    """The channels of one kernel: iopub fan-out, per-client sockets, readiness, status."""

    def __init__(self, context: zmq.asyncio.Context, connection: dict[str, Any], stats: Stats,
                 client_limit: int, on_status: Callable[[str], None]) -> None:
        self.context = context
        self.connection = connection
        self.signer = wire.Signer(connection["key"] if isinstance(connection["key"], bytes)
                                  else connection["key"].encode())
        self.stats = stats
        self.client_limit = client_limit
        self.on_status = on_status
        self.clients: dict[str, Client] = {}
        self.last_activity = time.time()
        self._iopub_seen = asyncio.Event()
        self._iopub = self.connect(zmq.SUB, "iopub")
        self._iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self._task = asyncio.create_task(self._fan_out())

    def connect(self, kind: int, channel: str, identity: bytes | None = None) -> zmq.asyncio.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        if identity is not None:
            sock.setsockopt(zmq.IDENTITY, identity)
        c = self.connection
        sock.connect(f"{c['transport']}://{c['ip']}:{c[channel + '_port']}")
        return sock

    def accept(self, frames: list[bytes], channel: str) -> list[bytes] | None:
        """The parts of a kernel message whose signature holds, else None (logged)."""
        try:
            signature, parts = wire.split_zmq(frames)
        except wire.WireError as e:
            log.warning("dropped a malformed %s message from a kernel: %s", channel, e)
            return None
        if not self.signer.verify(signature, parts):
            log.warning("dropped a %s message with a bad signature", channel)
            return None
        self.stats[channel, "from_kernel"] += 1
        self.last_activity = time.time()
        return parts

    def to_kernel(self, sock: zmq.asyncio.Socket, channel: str, parts: list[bytes]) -> None:
        sock.send_multipart(self.signer.frames(parts))
        self.stats[channel, "to_kernel"] += 1
        self.last_activity = time.time()

    async def _fan_out(self) -> None:
        sock = self._iopub
        while True:
            frames = await sock.recv_multipart()
            parts = self.accept(frames, "iopub")
            if parts is None:
                continue
            self._iopub_seen.set()
            try:
                content = parts[3]
                if len(content) < 64 and b"execution_state" in content:
                    self.on_status(orjson.loads(content).get("execution_state", ""))
                self.broadcast(parts)
            except Exception:  # one bad message must not stop the kernel's output
                log.exception("failed to relay an iopub message")

    def broadcast(self, parts: list[bytes]) -> None:
        v1 = text = None
        for client in self.clients.values():
            if client.v1:
                v1 = v1 or wire.to_v1(b"iopub", parts)
                client.outbox.put(v1, True)
            else:
                text = text or wire.to_json(b"iopub", parts, orjson.loads(parts[0]))
                client.outbox.put(*text)

    def broadcast_status(self, state: str) -> None:
        """A status message from Portico itself (restarting, dead) to every client."""
        self.broadcast(wire.build("status", {"execution_state": state}).parts)

    async def wait_ready(self, timeout: float) -> None:
        """Until the kernel answers kernel_info and its iopub reaches our subscription.

        A SUB socket drops what is published before its subscription lands, so after each
        reply we look for the busy/idle around it on iopub, and ask again if it was lost.
        One request is outstanding at a time, so none is left to run after we return.
        """
        sock = self.connect(zmq.DEALER, "shell", uuid.uuid4().hex.encode())
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._iopub_seen.clear()
                    await sock.send_multipart(self.signer.frames(wire.build("kernel_info_request", {}).parts))
                    await sock.recv_multipart()
                    try:
                        async with asyncio.timeout(0.25):
                            await self._iopub_seen.wait()
                            return
                    except TimeoutError:
                        pass
        finally:
            sock.close(linger=0)

    async def serve(self, ws: web.WebSocketResponse, session_id: str, abort: Callable[[], None]) -> None:
        stale = self.clients.pop(session_id, None)
        if stale is not None:
            await stale.close(CLOSE_REPLACED, "replaced by a newer connection with the same session_id")
        client = Client(self, ws, session_id, abort)
        self.clients[session_id] = client
        client.start()
        try:
            await client.receive()
        finally:
            if self.clients.get(session_id) is client:
                del self.clients[session_id]
            client.stop()

    async def disconnect_all(self, code: int, reason: str) -> None:
        clients = list(self.clients.values())
        self.clients.clear()
        await asyncio.gather(*(c.close(code, reason) for c in clients), return_exceptions=True)

    async def close(self, reason: str) -> None:
        await self.disconnect_all(CLOSE_KERNEL_GONE, reason)
        self._task.cancel()
        self._iopub.close(linger=0)
