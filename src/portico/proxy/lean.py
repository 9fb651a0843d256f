"""A lean HTTP/1.1 client for the proxy's most common request: no body, not HEAD, no upgrade.

aiohttp's client spends most of a small proxied request's CPU; this one writes the request
head in one write, parses the response with httptools (llhttp, the parser uvicorn uses) and
keeps connections per backend for reuse.  Response bodies are relayed as they arrive, with
the backend's reading paused while the client lags.  Anything else goes through aiohttp.

A body of known length goes through a BodyRelay: the backend's socket is read straight into
a buffer that is handed, as it is, to the client's transport, so each byte is copied only by
the two system calls (no bytes objects, no parser, no task wake-up per piece).

The protocols' callbacks cannot await, so each hands its news to the one coroutine waiting
on it through a future made for that wait (a response's head, a relay's end), as asyncio's
own streams do; an Event would have to be cleared and re-armed for every response.
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools

from .supervisor import Backend

HIGH_WATER = 1 << 20  # body bytes queued from a backend before its reading pauses
RELAY_BUFFER = 1 << 20  # a BodyRelay's read buffer


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
        self.length: int | None = None  # the body's Content-Length, when it has one and no Transfer-Encoding
        self.received = 0  # body bytes parsed so far
        self.reused = False  # taken from the idle list: the backend may have closed it meanwhile

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.fail(ConnectionError(f"the backend's answer is not HTTP: {str(e)[:200]}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.complete and exc is None and self.until_close:  # HTTP/1.0 style: the close ends the body
            self.complete = True
            self.readable.set()
        elif not self.complete:
            self.fail(exc or ConnectionError("the backend closed the connection"))
        self.pool.forget(self)

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        names = {name.lower(): value for name, value in self.headers}
        self.until_close = b"content-length" not in names and b"transfer-encoding" not in names
        length = names.get(b"content-length") if b"transfer-encoding" not in names else None
        self.length = int(length) if length is not None and length.strip().isdigit() else None
        self.keep_alive = self.parser.should_keep_alive()  # known from the head; confirmed at the end
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.queued += len(body)
        self.received += len(body)
        self.readable.set()
        if self.queued > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful now, before the parser resets
        self.complete = True
        self.readable.set()

    def fail(self, error: BaseException) -> None:
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
        self.length, self.received = None, 0
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

    def relay(self, client: asyncio.Transport) -> BodyRelay | None:
        """Hand the rest of a body of known length straight to the client's transport.

        Returns None when there is nothing to relay (no length, complete, broken).  What the
        parser already holds is written first; the caller must have sent the response head.
        """
        if self.length is None or self.complete or self.broken is not None or self.transport is None:
            return None
        remaining = self.length - self.received
        if remaining <= 0:
            return None
        for piece in self.chunks:
            client.write(piece)
        self.chunks.clear()
        self.queued = 0
        relay = BodyRelay(self, client, remaining)
        self.transport.set_protocol(relay)
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        return relay

    def relayed(self) -> None:
        """A BodyRelay has passed the whole body on: this connection takes its next response."""
        self.parser = httptools.HttpResponseParser(self)  # the old one stopped mid-body
        self.complete = True
        if self.transport is not None:
            self.transport.set_protocol(self)

    def reusable(self) -> bool:
        return self.complete and self.broken is None and self.keep_alive

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class BodyRelay(asyncio.BufferedProtocol):
    """The backend's side of a body in flight: reads land in one buffer the client's transport sends.

    Lockstep, as a blocking relay would be: when the client's transport can't send a piece at
    once, the backend's reading pauses until the client has taken all of it (the transport still
    refers to the buffer meanwhile; a paused transport reads nothing into it), and the buffer is
    then read into again.  One buffer, so it stays in the CPU's cache; the kernel's socket
    buffers keep both sides streaming.
    """

    def __init__(self, conn: BackendResponse, client: asyncio.Transport, remaining: int) -> None:
        self.conn = conn
        self.client = client
        self.remaining = remaining
        self.buffer = bytearray(min(RELAY_BUFFER, remaining))
        self.view = memoryview(self.buffer)
        self.paused = False
        self.error: BaseException | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.limits = client.get_write_buffer_limits()
        self.inner = client.get_protocol()
        client.set_protocol(ClientSide(self.inner, self))
        client.set_write_buffer_limits(high=0, low=0)  # told the moment it can't send, and when it has sent all

    # asyncio.BufferedProtocol (the backend's transport)
    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[: min(len(self.buffer), self.remaining)]

    def buffer_updated(self, nbytes: int) -> None:
        if self.client.is_closing():
            self.fail(ConnectionResetError("the client went away"))
            return
        self.client.write(self.view[:nbytes])
        self.remaining -= nbytes
        if self.client.get_write_buffer_size() and not self.paused and self.conn.transport is not None:
            self.paused = True  # the transport holds part of the buffer: read nothing into it until it is sent
            self.conn.transport.pause_reading()
        if self.remaining == 0:
            self.finish()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.remaining:
            self.fail(
                exc
                or ConnectionError(f"the backend closed the connection {self.remaining} bytes before the body's end")
            )
        self.conn.connection_lost(exc)

    # the client's transport, through ClientSide
    def client_drained(self) -> None:
        if self.paused:
            self.paused = False
            if self.conn.transport is not None and not self.conn.transport.is_closing():
                self.conn.transport.resume_reading()

    def client_lost(self) -> None:
        self.fail(ConnectionResetError("the client went away"))

    # ends
    def finish(self) -> None:
        if self.paused and self.conn.transport is not None:
            self.paused = False
            self.conn.transport.resume_reading()
        self.conn.relayed()
        self._hand_back()
        if not self.done.done():
            self.done.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.conn.broken = self.conn.broken or error
        self._hand_back()
        if not self.done.done():
            self.done.set_result(None)
        self.conn.close()

    def _hand_back(self) -> None:
        """The client's transport goes back to aiohttp as it was."""
        if isinstance(self.client.get_protocol(), ClientSide):
            self.client.set_protocol(self.inner)
            if not self.client.is_closing():
                self.client.set_write_buffer_limits(high=self.limits[1], low=self.limits[0])


class ClientSide(asyncio.Protocol):
    """Stands between the client's transport and aiohttp's protocol while a body is relayed,
    passing everything on, and telling the relay when the client has taken all it was sent."""

    def __init__(self, inner: asyncio.BaseProtocol, relay: BodyRelay) -> None:
        self.inner = inner
        self.relay = relay

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)  # type: ignore[attr-defined]  # a pipelined request, for aiohttp

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[attr-defined,no-any-return]

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
        self.relay.client_drained()

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.client_lost()
        self.inner.connection_lost(exc)


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
                _, protocol = await loop.create_unix_connection(
                    lambda: BackendResponse(self, backend), backend.unix_socket
                )
            else:
                _, protocol = await loop.create_connection(
                    lambda: BackendResponse(self, backend), backend.host, backend.port
                )
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
