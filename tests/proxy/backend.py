"""A small web app to proxy in tests: HTTP echo, WebSockets, server-sent events, gzip, redirects,
large bodies both ways.  `python backend.py --port N` or `--unix-socket PATH`; `--raw` serves a
raw TCP echo instead."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import os
import random
import sys
from collections.abc import Iterator

from aiohttp import WSMsgType, web

BLOCK = bytes(range(256)) * 4096  # 1 MiB of known bytes


async def echo(request: web.Request) -> web.Response:
    digest, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "path": request.rel_url.raw_path,
            "query": request.query_string,
            "headers": dict(request.headers),
            "size": size,
            "sha256": digest.hexdigest(),
            "pid": os.getpid(),
            "peer": str(request.transport.get_extra_info("peername") if request.transport else None),
        }
    )


async def env(request: web.Request) -> web.Response:
    return web.json_response({"env": dict(os.environ), "cwd": os.getcwd()})


async def big(request: web.Request) -> web.StreamResponse:
    mib = int(request.query.get("mib", "1"))
    response = web.StreamResponse(
        headers={"Content-Length": str(mib * len(BLOCK)), "Content-Type": "application/octet-stream"}
    )
    await response.prepare(request)
    if request.method == "HEAD":  # aiohttp would send what is written, HEAD or not
        return response
    for _ in range(mib):
        await response.write(BLOCK)
    return response


def pseudo_random_blocks(mib: int, seed: int) -> Iterator[bytes]:
    """Bytes that never repeat at any offset a proxy's buffers could slip by (unlike BLOCK)."""
    generator = random.Random(seed)
    for _ in range(mib):
        yield generator.randbytes(1 << 20)


async def random_bytes(request: web.Request) -> web.StreamResponse:
    mib, seed = int(request.query.get("mib", "1")), int(request.query.get("seed", "0"))
    response = web.StreamResponse(
        headers={"Content-Length": str(mib << 20), "Content-Type": "application/octet-stream"}
    )
    await response.prepare(request)
    for block in pseudo_random_blocks(mib, seed):
        await response.write(block)
    return response


async def cut(request: web.Request) -> web.StreamResponse:
    """Promises mib MiB, sends half, and closes the connection: a backend dying mid-body."""
    mib = int(request.query.get("mib", "8"))
    response = web.StreamResponse(
        headers={"Content-Length": str(mib << 20), "Content-Type": "application/octet-stream"}
    )
    await response.prepare(request)
    for _ in range(mib // 2):
        await response.write(BLOCK)
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.close()
    return response


async def sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for i in range(3):
        await response.write(f"data: event {i}\n\n".encode())
        await asyncio.sleep(float(request.query.get("gap", "0.3")))
    return response


async def gzipped(request: web.Request) -> web.Response:
    return web.Response(
        body=gzip.compress(b"squeezed " * 100), headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"}
    )


async def redirect(request: web.Request) -> web.Response:
    kind = request.query.get("to", "root")
    if kind == "absolute":
        raise web.HTTPFound(f"http://{request.host}/echo?from=absolute")
    if kind == "elsewhere":
        raise web.HTTPFound("https://example.org/")
    raise web.HTTPFound("/echo?from=root")


async def ws(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"), max_msg_size=0)
    await socket.prepare(request)
    async for msg in socket:
        if msg.type == WSMsgType.TEXT and msg.data.startswith("close:"):
            _, code, reason = msg.data.split(":", 2)
            await socket.close(code=int(code), message=reason.encode())
        elif msg.type == WSMsgType.TEXT:
            await socket.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await socket.send_bytes(msg.data)
    return socket


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return (
        web.Response(status=code, headers={"ETag": '"v1"'})
        if code in (204, 304)
        else web.Response(status=code, text=str(code))
    )


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "5")))
    return web.Response(text="late")


async def exit_(request: web.Request) -> web.Response:
    asyncio.get_running_loop().call_later(0.05, os._exit, int(request.query.get("code", "0")))
    return web.Response(text="bye")


def app() -> web.Application:
    application = web.Application(client_max_size=0)
    application.router.add_route("*", "/echo", echo)
    application.router.add_route("*", "/echo/{tail:.*}", echo)
    application.router.add_route("*", "/{prefix:.*}/echo", echo)
    application.router.add_get("/big", big)
    application.router.add_get("/random", random_bytes)
    application.router.add_get("/cut", cut)
    application.router.add_get("/env", env)
    application.router.add_get("/sse", sse)
    application.router.add_get("/gzip", gzipped)
    application.router.add_get("/redirect", redirect)
    application.router.add_get("/ws", ws)
    application.router.add_get("/slow", slow)
    application.router.add_route("*", "/status/{code:\\d+}", status)
    application.router.add_get("/exit", exit_)
    application.router.add_get("/", lambda r: web.Response(text="root"))
    return application


async def raw_echo(port: int | None, unix_socket: str | None) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await (
        asyncio.start_unix_server(handle, unix_socket)
        if unix_socket
        else asyncio.start_server(handle, "127.0.0.1", port)
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--unix-socket")
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--exit-at-once", type=int)
    args = parser.parse_args()
    print("backend starting", flush=True)
    if args.exit_at_once is not None:
        print("failing on purpose", file=sys.stderr, flush=True)
        sys.exit(args.exit_at_once)
    if args.raw:
        asyncio.run(raw_echo(args.port, args.unix_socket))
    elif args.unix_socket:
        web.run_app(app(), path=args.unix_socket, print=None)
    else:
        web.run_app(app(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
