"""A lean HTTP/1.1 client for the proxy's most common request: no body, not HEAD, no upgrade.

aiohttp's client spends most of a small proxied request's CPU; this one writes the request
head in one write, parses the response with httptools (llhttp, the parser uvicorn uses) and
keeps connections per backend for reuse.  Response bodies are relayed as they arrive, with
the backend's reading paused while the client lags.  Anything else goes through aiohttp.
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools

from .supervisor import Backend

HIGH_WATER = 1 << 20  # body bytes queued from a backend before its reading pauses


class BackendResponse(asyncio.Protocol):
    """One connection to a backend, one response at a time."""

    def __init__(self, pool: LeanPool, backend: Backend) -> None:
        self.pool = pool
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] | None = None
        self.chunks: deque[bytes] = deque()
        self.queued = 0
        self.complete = False
        self.broken: BaseException | None = None
        self.readable = asyncio.Event()
        self.paused = False
        self.keep_alive = False
        self.until_close = False  # a body without a length: it ends when the connection does
        self.reused = False  # taken from the idle list: the backend may have closed it meanwhile

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ConnectionError(f"the backend's answer is not HTTP: {str(e)[:200]}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.complete and exc is None and self.until_close:  # HTTP/1.0 style: the close ends the body
            self.complete = True
            self.readable.set()
        elif not self.complete:
            self._fail(exc or ConnectionError("the backend closed the connection"))
        self.pool.forget(self)

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        names = {name.lower() for name, _ in self.headers}
        self.until_close = b"content-length" not in names and b"transfer-encoding" not in names
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.queued += len(body)
        self.readable.set()
        if self.queued > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful now, before the parser resets
        self.complete = True
        self.readable.set()

    def _fail(self, error: BaseException) -> None:
        self.broken = error
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        self.readable.set()

    # use
    def send(self, head: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.status, self.reason, self.headers = 0, "", []
        self.chunks.clear()
        self.queued, self.complete, self.broken, self.until_close, self.keep_alive = 0, False, None, False, False
        self.readable.clear()
        self.head = asyncio.get_running_loop().create_future()
        self.transport.write(head)
        return self.head

    async def body(self) -> list[bytes]:
        """The next pieces of the body; empty when it is over."""
        while not self.chunks and not self.complete and self.broken is None:
            self.readable.clear()
            await self.readable.wait()
        if self.broken is not None and not self.chunks:
            raise self.broken
        pieces = list(self.chunks)
        self.chunks.clear()
        self.queued = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return pieces

    def reusable(self) -> bool:
        return self.complete and self.broken is None and self.keep_alive

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LeanPool:
    """Idle keep-alive connections per backend."""

    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.idle: dict[Backend, list[BackendResponse]] = {}

    async def connection(self, backend: Backend) -> BackendResponse:
        idle = self.idle.get(backend)
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            if backend.unix_socket:
                _, protocol = await loop.create_unix_connection(lambda: BackendResponse(self, backend),
                                                                backend.unix_socket)
            else:
                _, protocol = await loop.create_connection(lambda: BackendResponse(self, backend),
                                                           backend.host, backend.port)
        return protocol

    def release(self, conn: BackendResponse) -> None:
        if conn.reusable() and conn.transport is not None and not conn.transport.is_closing():
            self.idle.setdefault(conn.backend, []).append(conn)
        else:
            conn.close()

    def forget(self, conn: BackendResponse) -> None:
        idle = self.idle.get(conn.backend)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()
