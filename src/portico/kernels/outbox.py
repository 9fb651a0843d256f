"""What is waiting to be written to one WebSocket: bounded, coalescing, never silently lossy.

Policy, in order, for a client that reads slower than its kernel writes:
1. Up to half of client_buffer_limit, frames queue as they are.
2. Past half, a stream message (stdout/stderr) that follows a queued, unsent stream
   message of the same name and parent is merged into it: same text, fewer frames.
3. An iopub message that would take the queue past client_buffer_limit is not queued: the
   client falls back to reading from the kernel's journal (relay.Client.catch_up), which
   feeds it as its queue drains, and it is live again once it has caught up.  So a client
   that is slow, not stalled, costs at most its limit and is never dropped for being slow.
4. A client is disconnected with close code 4008 when what it has yet to read is gone
   from the journal (evicted by journal_max_bytes or journal_max_age: it is further behind
   than the journal reaches back), or, with no journal, at once at step 3; or when other
   frames (replies) take its queue past twice its limit.  The journal position of the last
   frame written is kept, so a reconnect replays what it missed, or is told of the gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import orjson
from aiohttp import WSMsgType, web

from ..errors import Close

log = logging.getLogger("portico")

MAX_COALESCED = 64 * 1024  # a merged stream message stops growing at 64 KiB (merging copies it)

Encoder = Callable[[list[bytes], int], tuple[bytes, bool]]


class Frame:
    __slots__ = ("data", "opcode", "seq", "parts")

    def __init__(self, data: bytes, binary: bool, seq: int, parts: list[bytes] | None) -> None:
        self.data = data
        self.opcode = WSMsgType.BINARY if binary else WSMsgType.TEXT
        self.seq = seq  # journal sequence number of an iopub message, else 0
        self.parts = parts  # the iopub message's parts, kept for coalescing


class Outbox:
    def __init__(self, ws: web.WebSocketResponse, limit: int, abort: Callable[[], None], encode: Encoder) -> None:
        self.ws = ws
        self.limit = limit
        self.abort = abort
        self.encode = encode
        self.pending = 0
        self.last_seq = 0  # the journal position of the last iopub frame written
        self.overflowed = False
        self._queue: deque[Frame] = deque()
        self._ready = asyncio.Event()
        self._roomy = asyncio.Event()
        self._roomy.set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self._write())
        self._tasks.append(task)
        return task

    def put(self, data: bytes, binary: bool, seq: int = 0, parts: list[bytes] | None = None) -> None:
        if self.overflowed:
            return
        if parts is not None and self.pending > self.limit // 2 and self._coalesce(parts, seq):
            self._check_limit()
            return
        self.pending += len(data)
        if self._check_limit(self.limit if seq else 2 * self.limit):
            return
        self._queue.append(Frame(data, binary, seq, parts))
        if self.pending > self.limit // 2:
            self._roomy.clear()
        self._ready.set()

    def fits(self, size: int) -> bool:
        """Whether size more bytes keep the queue within its limit."""
        return self.pending + size <= self.limit

    def _check_limit(self, limit: int | None = None) -> bool:
        if self.pending > (limit or self.limit):
            self.overflow(f"{self.pending} bytes behind (client_buffer_limit {self.limit})")
        return self.overflowed

    def overflow(self, why: str) -> None:
        """Disconnect this client with 4008, saying why in the log."""
        if not self.overflowed:
            self.overflowed = True
            self._tasks.append(asyncio.create_task(self._drop(why)))

    async def roomy(self) -> None:
        """Until the queue is under half its limit (for replays that must not overflow it)."""
        await self._roomy.wait()

    def _coalesce(self, parts: list[bytes], seq: int) -> bool:
        if not self._queue:
            return False
        tail = self._queue[-1]
        if tail.parts is None or tail.parts[1] != parts[1] or len(tail.parts[3]) > MAX_COALESCED:
            return False
        first, second = orjson.loads(tail.parts[0]), orjson.loads(parts[0])
        if first.get("msg_type") != "stream" or second.get("msg_type") != "stream":
            return False
        a, b = orjson.loads(tail.parts[3]), orjson.loads(parts[3])
        if a.get("name") != b.get("name"):
            return False
        a["text"] = a.get("text", "") + b.get("text", "")
        merged = [tail.parts[0], tail.parts[1], tail.parts[2], orjson.dumps(a)]
        data, binary = self.encode(merged, seq)
        self.pending += len(data) - len(tail.data)
        tail.data, tail.seq, tail.parts = data, seq, merged
        return True

    async def _write(self) -> None:
        queue, ready, send = self._queue, self._ready, self.ws.send_frame
        try:
            while True:
                if not queue:
                    ready.clear()
                    await ready.wait()
                    continue
                frame = queue.popleft()
                self.pending -= len(frame.data)
                if self.pending <= self.limit // 2:
                    self._roomy.set()
                await send(frame.data, frame.opcode)
                if frame.seq:
                    self.last_seq = frame.seq
        except (ConnectionError, RuntimeError):
            pass  # the client went away; its receive loop ends the connection

    async def _drop(self, why: str) -> None:
        log.warning("dropping a WebSocket client: %s", why)
        self._queue.clear()
        await self.close(Close.TOO_SLOW, "client too slow: output buffer limit reached; reconnect to replay")

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

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()


class RateLimit:
    """Jupyter Server's optional iopub rate limit, per connection (off unless limit_rate)."""

    EXEMPT = frozenset({"status", "comm_open", "execute_input"})

    def __init__(self, msg_rate: float, data_rate: float, window: float) -> None:
        self.msg_rate, self.data_rate, self.window = msg_rate, data_rate, window
        self._events: deque[tuple[float, int]] = deque()
        self._bytes = 0
        self.tripped: str | None = None

    def allow(self, msg_type: str, size: int, now: float) -> tuple[bool, str | None]:
        """(send it?, a notice to give the client when the limit has just tripped)."""
        if msg_type in self.EXEMPT:
            return True, None
        events = self._events
        while events and events[0][0] <= now:
            self._bytes -= events.popleft()[1]
        size = size if msg_type == "stream" else 0
        msgs, data = (len(events) + 1) / self.window, (self._bytes + size) / self.window
        notice = None
        if self.msg_rate and msgs > self.msg_rate:
            notice = None if self.tripped else "message"
            self.tripped = "message"
        elif self.data_rate and data > self.data_rate:
            notice = None if self.tripped else "data"
            self.tripped = "data"
        elif self.tripped and msgs < 0.8 * (self.msg_rate or msgs + 1) and data < 0.8 * (self.data_rate or data + 1):
            log.warning("iopub messages resumed")
            self.tripped = None
        if self.tripped:
            return False, notice
        events.append((now + self.window, size))
        self._bytes += size
        return True, None

    def notice(self, kind: str) -> str:
        limit = (
            f"iopub_msg_rate_limit={self.msg_rate:g} (msgs/sec)"
            if kind == "message"
            else f"iopub_data_rate_limit={self.data_rate:g} (bytes/sec)"
        )
        return (
            f"IOPub {kind} rate exceeded.\nPortico will temporarily stop sending output to the client "
            f"in order to avoid crashing it.\nTo change this limit, set the option "
            f"{limit.split('=')[0]}.\n\nCurrent values:\n{limit}\nrate_limit_window={self.window:g} (secs)\n"
        )
