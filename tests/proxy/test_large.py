"""A 1 GB download and a 500 MB upload through the proxy: byte-exact, and Portico's memory stays flat."""

from __future__ import annotations

import hashlib
import json
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
    srv = start_server("--servers", servers, "--proxy-entry-points", "false", "--log-level", "warning",
                       "--max-body-size", str(1 << 40))
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
