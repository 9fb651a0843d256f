"""Large bodies through the proxy: a 1 GB download and a 500 MB upload byte-exact with Portico's
memory flat; a slow reader, a backend dying mid-body and a client leaving mid-download."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import Server, start_server

BACKEND = str(Path(__file__).with_name("backend.py"))
BLOCK = bytes(range(256)) * 4096  # the backend's 1 MiB block
DOWN_MIB, UP_MIB = 1024, 500


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    servers = json.dumps({"app": {"command": [sys.executable, BACKEND, "--port", "{port}"], "timeout": 20}})
    srv = start_server(
        "--servers", servers, "--proxy-entry-points", "false", "--log-level", "warning", "--max-body-size", str(1 << 40)
    )
    yield srv
    srv.stop()


def peak_rss_mib(server: Server) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def digest_of_blocks(count: int) -> str:
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(BLOCK)
    return digest.hexdigest()


async def test_large_bodies_stream_both_ways(http: aiohttp.ClientSession, server: Server) -> None:
    async with http.get(server.url + "app/big?mib=4", headers=server.headers) as r:  # started and warm
        assert len(await r.read()) == 4 * len(BLOCK)
    before = peak_rss_mib(server)

    digest, size = hashlib.sha256(), 0
    async with http.get(server.url + f"app/big?mib={DOWN_MIB}", headers=server.headers) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == DOWN_MIB * len(BLOCK)
        async for chunk in r.content.iter_chunked(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    assert size == DOWN_MIB * len(BLOCK) and digest.hexdigest() == digest_of_blocks(DOWN_MIB)

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(UP_MIB):
            yield BLOCK

    headers = {**server.headers, "Content-Length": str(UP_MIB * len(BLOCK))}
    async with http.post(server.url + "app/echo", data=upload(), headers=headers) as r:
        echoed = await r.json()
    assert (echoed["size"], echoed["sha256"]) == (UP_MIB * len(BLOCK), digest_of_blocks(UP_MIB))

    grown = peak_rss_mib(server) - before
    print(f"peak RSS {before:.0f} MiB before, grew by {grown:.1f} MiB")
    assert grown < 50, f"Portico's peak RSS grew by {grown:.0f} MiB"


def random_digest(mib: int, seed: int) -> str:
    """What backend.py's /random sends: bytes that never repeat, so a slipped buffer shows."""
    generator, digest = random.Random(seed), hashlib.sha256()
    for _ in range(mib):
        digest.update(generator.randbytes(1 << 20))
    return digest.hexdigest()


async def fetch_digest(http: aiohttp.ClientSession, server: Server, path: str, pause: float = 0) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    async with http.get(server.url + path, headers=server.headers) as r:
        assert r.status == 200
        while chunk := await r.content.read(256 << 10):
            digest.update(chunk)
            size += len(chunk)
            if pause:
                await asyncio.sleep(pause)
    return size, digest.hexdigest()


async def test_a_slow_reader_gets_every_byte_in_order(http: aiohttp.ClientSession, server: Server) -> None:
    """The client lags far behind the backend: the backend is paused, and no buffer the client's
    transport still holds is written over."""
    size, digest = await fetch_digest(http, server, "app/random?mib=48&seed=7", pause=0.002)
    assert size == 48 << 20 and digest == random_digest(48, 7)


async def test_the_backend_connection_is_reused_after_a_relayed_body(
    http: aiohttp.ClientSession, server: Server
) -> None:
    async with http.get(server.url + "app/echo", headers=server.headers) as r:
        before = (await r.json())["peer"]
    for seed in (1, 2):
        assert await fetch_digest(http, server, f"app/random?mib=3&seed={seed}") == (3 << 20, random_digest(3, seed))
    async with http.get(server.url + "app/echo", headers=server.headers) as r:
        assert r.status == 200 and (await r.json())["peer"] == before  # the same kept-alive connection


async def test_a_backend_dying_mid_body_cuts_only_that_response_short(
    http: aiohttp.ClientSession, server: Server
) -> None:
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(server.url + "app/cut?mib=8", headers=server.headers) as r:
            assert r.status == 200 and r.headers["Content-Length"] == str(8 << 20)
            await r.read()
    assert await fetch_digest(http, server, "app/random?mib=2&seed=3") == (2 << 20, random_digest(2, 3))


async def test_a_client_leaving_mid_download_leaves_the_server_serving(
    http: aiohttp.ClientSession, server: Server
) -> None:
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    for leave in ("at once", "after lagging"):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET /app/random?mib=256&seed=4 HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: token {server.token}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(1 << 20)
        if leave == "after lagging":
            await asyncio.sleep(0.5)  # the relay has paused the backend for this client by now
        writer.transport.abort()
        for _ in range(3):  # no pooled connection is left mid-body
            async with http.get(server.url + "app/echo", headers=server.headers) as r:
                assert r.status == 200 and (await r.json())["method"] == "GET"
    assert await fetch_digest(http, server, "app/random?mib=2&seed=5") == (2 << 20, random_digest(2, 5))


async def test_a_download_over_tls_is_streamed_byte_exact(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """Under TLS the client's transport encrypts later what it is given, so the body takes the
    streamed path instead of the relay; it must arrive whole all the same."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    servers = json.dumps({"app": {"command": [sys.executable, BACKEND, "--port", "{port}"], "timeout": 20}})
    srv = start_server("--servers", servers, "--certfile", str(cert), "--keyfile", str(key), "--log-level", "warning")
    try:
        digest, size = hashlib.sha256(), 0
        async with http.get(
            srv.url + "app/random?mib=8&seed=6", headers=srv.headers, ssl=ssl.create_default_context(cafile=str(cert))
        ) as r:
            assert r.status == 200
            async for chunk in r.content.iter_chunked(256 << 10):
                digest.update(chunk)
                size += len(chunk)
        assert (size, digest.hexdigest()) == (8 << 20, random_digest(8, 6))
    finally:
        srv.stop()
