"""WebSockets through the proxy, and raw_socket_proxy (a WebSocket to a plain TCP or Unix stream).

The backend is connected first, offering the client's subprotocols; the client is answered
with the one the backend chose (or refused with the backend's status).  Text stays text,
binary stays binary; a close on either side is passed on with its code and reason.  Both
sides answer pings themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from ..errors import BadGateway, Close
from .http import Forwarder, Target

log = logging.getLogger("portico")


def wants_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def forward(forwarder: Forwarder, request: web.Request, target: Target) -> web.WebSocketResponse:
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    url = "ws" + target.backend.origin[4:] + target.path
    query = forwarder.query(request)
    if query:
        url += "?" + query
    headers = forwarder.request_headers(request, target)
    for name in ("Host", "Origin"):  # the backend sees its own host; aiohttp sets it from the URL
        headers.popall(name, None)
    try:
        upstream = await forwarder.session(target.backend).ws_connect(
            url,
            protocols=protocols,
            headers=headers,
            autoclose=False,
            autoping=True,
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_close=10.0),
        )
    except aiohttp.WSServerHandshakeError as e:
        raise BadGateway(
            f"{target.name} refused the WebSocket with status {e.status}.",
            "WebSocket Refused",
            status=e.status if 400 <= e.status < 600 else 502,
        ) from None
    except aiohttp.ClientError as e:
        raise BadGateway(
            f"{target.name} at {target.backend.label}: the WebSocket failed: {e}.", "Backend Unreachable"
        ) from None
    client = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (), autoclose=False, autoping=True, max_msg_size=0
    )
    await client.prepare(request)
    await _pump(client, upstream)
    return client


async def _pump(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    async def relay(
        source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        gone: int,
    ) -> None:
        code, message = gone, ""
        while True:
            msg = await source.receive()
            if msg.type == WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif msg.type == WSMsgType.CLOSE:
                code, message = msg.data or 1000, msg.extra or ""
                break
            elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
        await sink.close(code=code, message=message.encode())

    try:
        await _both_ways(relay(client, upstream, Close.GOING_AWAY), relay(upstream, client, Close.INTERNAL))
    finally:
        if not upstream.closed:
            await upstream.close()
        if not client.closed:
            await client.close()


async def _both_ways(*directions: Coroutine[Any, Any, None]) -> None:
    """Run each direction of a relay until the first ends, then end the other."""
    tasks = [asyncio.create_task(d) for d in directions]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def raw_socket(request: web.Request, target: Target) -> web.WebSocketResponse:
    """WebSocket messages to a stream socket's bytes, and the socket's bytes back as binary messages."""
    backend = target.backend
    try:
        if backend.unix_socket:
            reader, writer = await asyncio.open_unix_connection(backend.unix_socket)
        else:
            reader, writer = await asyncio.open_connection(backend.host, backend.port)
    except OSError as e:
        raise BadGateway(
            f"{target.name} at {backend.label} refused the connection: {e}.", "Backend Unreachable"
        ) from None
    client = web.WebSocketResponse(autoping=True, max_msg_size=0)
    await client.prepare(request)

    async def to_socket() -> None:
        async for msg in client:
            if msg.type == WSMsgType.TEXT:
                writer.write(msg.data.encode())
            elif msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
            else:
                break
            await writer.drain()

    async def from_socket() -> None:
        while data := await reader.read(64 * 1024):
            await client.send_bytes(data)

    try:
        await _both_ways(to_socket(), from_socket())
    finally:
        writer.close()
        if not client.closed:
            await client.close(code=Close.NORMAL if reader.at_eof() else Close.INTERNAL)
    return client
