"""HTTP through the proxy, streamed both ways.

Request and response bodies pass through in chunks as they come (backpressure: a slow
reader slows the writer; nothing is held whole), Content-Encoding untouched; only servers
with rewrite_response have their response buffered.  Hop-by-hop headers are dropped,
X-Forwarded-For/Proto/Host and the context-path headers jupyter-server-proxy sends are
added, and Portico's token, its Authorization header and its cookies never reach a backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import hdrs, web
from aiohttp.http_writer import StreamWriter
from multidict import CIMultiDict

from ..errors import BadGateway, GatewayTimeout
from .config import call_with
from .lean import BodyRelay, LeanPool
from .supervisor import Backend

log = logging.getLogger("portico")

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
}
PORTICO_COOKIE_PREFIX = "portico"  # the browser page's cookies (login, XSRF) are Portico's own
LEAN_METHODS = {"GET", "DELETE", "OPTIONS"}
READ_BUFFER = 4 << 20  # a backend connection's read buffer: fewer, larger reads
WRITE_BUFFER = 4 << 20  # bytes queued for a client before the relay waits for it to read
SMALL_BODY = 256 << 10  # a response with a Content-Length up to this is read whole and sent in one write


@dataclass
class RewritableResponse:
    """What a rewrite_response function receives and may change (jupyter-server-proxy's shape)."""

    body: bytes
    headers: CIMultiDict[str]
    code: int
    reason: str
    orig_response: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class Target:
    """Where one request goes and how: the backend, the path there, and the server's options."""

    backend: Backend
    path: str  # the path on the backend, starting with /
    context: str  # the prefix the client used (/name or /proxy/8080), for X-Forwarded-Context
    name: str
    headers_override: dict[str, str] = field(default_factory=dict)
    rewrites: tuple[Callable[..., Any], ...] = ()
    absolute_url: bool = False


class Forwarder:
    """One connection pool per backend, reused across requests."""

    def __init__(self, token: str, connect_timeout: float, response_timeout: float, lean: bool = True) -> None:
        self.token = token
        self.lean = LeanPool(connect_timeout) if lean else None
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self._sessions: dict[Backend, aiohttp.ClientSession] = {}

    def session(self, backend: Backend) -> aiohttp.ClientSession:
        session = self._sessions.get(backend)
        if session is None or session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=None)
            session = self._sessions[backend] = aiohttp.ClientSession(
                connector=backend.connector(),
                timeout=timeout,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                read_bufsize=READ_BUFFER,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return session

    async def close(self) -> None:
        if self.lean is not None:
            self.lean.close()
        await asyncio.gather(*(s.close() for s in self._sessions.values()), return_exceptions=True)
        self._sessions.clear()

    # headers ---------------------------------------------------------------------------
    def request_headers(self, request: web.Request, target: Target) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        connection_listed = {h.strip().lower() for h in request.headers.get(hdrs.CONNECTION, "").split(",")}
        for name, value in request.headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in connection_listed or lower.startswith("sec-websocket"):
                continue
            if lower == "authorization" and self.token and self.token in value:
                continue
            if lower == "cookie":
                value = strip_portico_cookies(value)
                if not value:
                    continue
            headers.add(name, value)
        peer = request.remote or ""
        previous = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
        headers["X-Forwarded-Proto"] = request.headers.get("X-Forwarded-Proto", request.scheme)
        headers["X-Forwarded-Host"] = request.headers.get("X-Forwarded-Host", request.host)
        headers["X-Forwarded-Context"] = headers["X-ProxyContextPath"] = target.context
        for name, value in target.headers_override.items():
            headers[name] = value
        return headers

    def query(self, request: web.Request) -> str:
        pairs = [(k, v) for k, v in request.query.items() if not (k == "token" and self.token and v == self.token)]
        if len(pairs) == len(request.query):
            return request.rel_url.raw_query_string
        return urlencode(pairs)

    def response_headers(self, upstream: aiohttp.ClientResponse, target: Target, host: str) -> CIMultiDict[str]:
        return relayed_headers(upstream.headers.items(), target, host)

    # the request -------------------------------------------------------------------------
    def leanable(self, request: web.Request, target: Target) -> bool:
        """The lean client's case: no body, not HEAD (its response has none to parse), no upgrade."""
        return (
            self.lean is not None
            and not request.body_exists
            and request.method in LEAN_METHODS
            and not target.rewrites
            and hdrs.EXPECT not in request.headers
        )

    async def forward(self, request: web.Request, target: Target) -> web.StreamResponse:
        if self.leanable(request, target):
            return await self._lean(request, target)
        return await self._aiohttp(request, target)

    async def _lean(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert self.lean is not None
        query = self.query(request)
        path = target.path + ("?" + query if query else "")
        headers = self.request_headers(request, target)
        if hdrs.HOST not in headers:  # an HTTP/1.0 client sent none; HTTP/1.1 needs one
            headers[hdrs.HOST] = target.backend.label if not target.backend.unix_socket else "localhost"
        lines = [f"{request.method} {path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        for attempt in (1, 2):  # a kept-alive connection the backend has just closed: once more, fresh
            try:
                conn = await self.lean.connection(target.backend)
            except TimeoutError:
                raise GatewayTimeout(
                    f"{target.name} at {target.backend.label}: connecting took over "
                    f"{self.connect_timeout:g} s (option proxy_connect_timeout)."
                ) from None
            except OSError as e:
                raise BadGateway(
                    f"{target.name} at {target.backend.label} refused the connection: {e}.", "Backend Unreachable"
                ) from None
            try:
                async with asyncio.timeout(self.response_timeout):
                    await conn.send(head)
                break
            except TimeoutError:
                conn.close()
                raise GatewayTimeout(
                    f"{target.name} at {target.backend.label} did not answer within "
                    f"{self.response_timeout:g} s (option proxy_response_timeout)."
                ) from None
            except ConnectionError as e:
                conn.close()
                if attempt == 2 or not conn.reused:
                    raise BadGateway(
                        f"{target.name} at {target.backend.label} failed: {str(e)[:300]}.", "Backend Failed"
                    ) from None
            except BaseException:  # cancelled (shutdown): the connection is in an unknown state
                conn.close()
                raise
        try:
            relayed = relayed_headers(
                ((k.decode("latin-1"), v.decode("latin-1")) for k, v in conn.headers), target, request.host
            )
            status, reason = conn.status, conn.reason or None
            if conn.complete:  # small: all here already
                body = b"".join(conn.chunks)
                relayed.popall(hdrs.CONTENT_LENGTH, None)
                return web.Response(status=status, reason=reason, body=body, headers=relayed)
            response = web.StreamResponse(status=status, reason=reason, headers=relayed)
            if hdrs.CONTENT_LENGTH not in relayed and status not in (204, 304) and status >= 200:
                response.enable_chunked_encoding()
            client = request.transport
            writer = await response.prepare(request)
            if (
                isinstance(writer, StreamWriter)
                and client is not None
                and conn.length is not None
                and client.get_extra_info("sslcontext") is None
                and not client.is_closing()
            ):
                writer.send_headers()
                relay = conn.relay(client)
                if relay is not None:
                    return await self._relay(response, relay, target)
            try:
                while pieces := await conn.body():
                    await response.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            except (ConnectionError, OSError) as e:
                log.info("proxy %s: a stream was cut short: %s", target.name, e)
                conn.close()
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
        finally:
            self.lean.release(conn)

    async def _relay(self, response: web.StreamResponse, relay: BodyRelay, target: Target) -> web.StreamResponse:
        """Wait while a BodyRelay passes a body on."""
        try:
            await relay.done
        except BaseException:  # cancelled (shutdown): the connection is mid-body
            relay.fail(ConnectionError("cancelled"))
            raise
        if relay.error is not None:
            log.info("proxy %s: a stream was cut short: %s", target.name, relay.error)
            relay.client.close()  # the client sees a body shorter than its Content-Length
            return response
        await response.write_eof()
        return response

    async def _aiohttp(self, request: web.Request, target: Target) -> web.StreamResponse:
        url = target.backend.origin + target.path
        query = self.query(request)
        if query:
            url += "?" + query
        headers = self.request_headers(request, target)
        body: Any = request.content if request.body_exists else None
        session = self.session(target.backend)
        try:
            async with asyncio.timeout(self.response_timeout):  # the connect timeout is aiohttp's own
                upstream = await session.request(
                    request.method, url, headers=headers, data=body, allow_redirects=False, compress=None
                )
        except TimeoutError:
            raise GatewayTimeout(
                f"{target.name} at {target.backend.label} did not answer within "
                f"{self.response_timeout:g} s (option proxy_response_timeout)."
            ) from None
        except aiohttp.ClientConnectorError as e:
            raise BadGateway(
                f"{target.name} at {target.backend.label} refused the connection: {e.os_error}.", "Backend Unreachable"
            ) from None
        except aiohttp.ServerTimeoutError:
            raise GatewayTimeout(
                f"{target.name} at {target.backend.label}: connecting took over "
                f"{self.connect_timeout:g} s (option proxy_connect_timeout)."
            ) from None
        except aiohttp.ClientError as e:
            raise BadGateway(
                f"{target.name} at {target.backend.label} failed: {type(e).__name__}: {str(e)[:300]}.", "Backend Failed"
            ) from None
        try:
            if target.rewrites:
                return await self._rewritten(request, upstream, target)
            length = upstream.content_length
            if length is not None and length <= SMALL_BODY and request.method != "HEAD":
                return web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    body=await upstream.read(),
                    headers=self.response_headers(upstream, target, request.host),
                )
            return await self._streamed(request, upstream, target)
        finally:
            upstream.release()

    async def _streamed(
        self, request: web.Request, upstream: aiohttp.ClientResponse, target: Target
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=self.response_headers(upstream, target, request.host),
        )
        bodiless = request.method == "HEAD" or upstream.status in (204, 304) or upstream.status < 200
        if upstream.headers.get(hdrs.CONTENT_LENGTH) is None and not bodiless:
            response.enable_chunked_encoding()
        await response.prepare(request)
        if request.transport is not None:  # room for a few large pieces before waiting on the client
            request.transport.set_write_buffer_limits(high=WRITE_BUFFER)
        try:
            while chunk := await upstream.content.readany():
                await response.write(chunk)
        except (ConnectionResetError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
            log.info("proxy %s: a stream was cut short: %s", target.name, e)
            upstream.close()
            return response
        await response.write_eof()
        return response

    async def _rewritten(self, request: web.Request, upstream: aiohttp.ClientResponse, target: Target) -> web.Response:
        body = await upstream.read()
        rewritable = RewritableResponse(
            body,
            self.response_headers(upstream, target, request.host),
            upstream.status,
            upstream.reason or "",
            upstream,
        )
        for rewrite in target.rewrites:
            changed = call_with(
                rewrite,
                response=rewritable,
                request=request,
                orig_response=upstream,
                host=target.backend.host,
                port=target.backend.port,
                path=target.path,
            )
            if isinstance(changed, RewritableResponse):
                rewritable = changed
        headers = CIMultiDict((k, v) for k, v in rewritable.headers.items() if k.lower() != "content-length")
        return web.Response(
            status=rewritable.code, reason=rewritable.reason or None, body=rewritable.body, headers=headers
        )


def relayed_headers(pairs: Iterable[tuple[str, str]], target: Target, host: str) -> CIMultiDict[str]:
    """A backend's response headers as the client gets them: no hop-by-hop, Location under the prefix."""
    given = list(pairs)
    listed = {h.strip().lower() for name, value in given if name.lower() == "connection" for h in value.split(",")}
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in given:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in listed:
            continue
        if lower == "location":
            value = rewrite_location(value, target, host)
        headers.add(name, value)
    return headers


def strip_portico_cookies(header: str) -> str:
    kept = [
        part.strip()
        for part in header.split(";")
        if part.strip() and not part.strip().lower().startswith(PORTICO_COOKIE_PREFIX)
    ]
    return "; ".join(kept)


def rewrite_location(location: str, target: Target, host: str) -> str:
    """A redirect to the backend's own root lands under the proxy's prefix, never twice.

    A location on the backend's address, or on the host the client used (the backend saw it in
    Host), is ours; anything else is left alone.
    """
    if target.absolute_url:
        return location
    parts = urlsplit(location)
    if parts.scheme and f"{parts.scheme}://{parts.netloc}" != target.backend.origin and parts.netloc != host:
        return location  # elsewhere
    path = parts.path
    if not path.startswith("/") or path.startswith(target.context + "/") or path == target.context:
        return location if not parts.scheme else path + (f"?{parts.query}" if parts.query else "")
    rewritten = target.context + path
    return rewritten + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
