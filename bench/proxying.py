"""The process proxy's scenarios: Portico and jupyter-server-proxy in front of the same app,
and the app reached directly (the limit).  The app is tests/proxy/backend.py (aiohttp)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

import servers
from servers import Server

ROOT = Path(__file__).resolve().parent.parent
BACKEND = str(ROOT / "tests" / "proxy" / "backend.py")
BLOCK = bytes(range(256)) * 4096  # the backend's 1 MiB block


@dataclass
class Endpoint:
    """Where a target serves the app: its URL prefix and headers, and the process to measure."""

    url: str  # ends with /
    headers: dict[str, str]
    server: Server | None  # the proxy, None for direct
    stop: Callable[[], None]


def _spawn_backend(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, BACKEND, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=servers._die_with_parent)


async def wait_answer(http: aiohttp.ClientSession, url: str, headers: dict[str, str], timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with http.get(url, headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.005)


async def direct(http: aiohttp.ClientSession) -> Endpoint:
    port = servers.free_port()
    proc = _spawn_backend(port)
    url = f"http://127.0.0.1:{port}/"
    await wait_answer(http, url, {})

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return Endpoint(url, {}, None, stop)


def app_options() -> dict[str, Any]:
    return {"command": [sys.executable, BACKEND, "--port", "{port}"], "timeout": 60}


async def portico(http: aiohttp.ClientSession, warm: bool = True) -> Endpoint:
    port = servers.free_port()
    server = servers._spawn("Portico", [str(servers.PORTICO), "--port", str(port), "--token", servers.TOKEN,
                                        "--pool-size", "0", "--log-level", "warning", "--proxy-entry-points", "false",
                                        "--servers", json.dumps({"app": app_options()}),
                                        "--max-body-size", str(1 << 40)], port)
    await servers.wait_ready(server, "api")
    endpoint = Endpoint(server.url + "app/", server.headers, server, server.stop)
    if warm:
        await wait_answer(http, endpoint.url, endpoint.headers)
    return endpoint


async def server_proxy(http: aiohttp.ClientSession, warm: bool = True) -> Endpoint:
    port = servers.free_port()
    config = Path(tempfile.mkdtemp(prefix="bench-jsp-")) / "jupyter_server_config.py"
    config.write_text(f"c.ServerProxy.servers = {{'app': {app_options()!r}}}\n")
    server = servers._spawn("jupyter-server-proxy", [
        str(servers.ANCHORS / "jupyter-server"), f"--port={port}", "--ip=127.0.0.1",
        f"--IdentityProvider.token={servers.TOKEN}", "--allow-root", "--no-browser", f"--config={config}",
        "--log-level=WARN", "--ServerApp.max_body_size=" + str(1 << 40), "--ServerApp.max_buffer_size=" + str(1 << 40)],
        port)
    await servers.wait_ready(server)
    endpoint = Endpoint(server.url + "app/", server.headers, server, server.stop)
    if warm:
        await wait_answer(http, endpoint.url, endpoint.headers)
    return endpoint


STARTERS: dict[str, Callable[..., Awaitable[Endpoint]]] = {
    "direct": direct, "Portico": portico, "jupyter-server-proxy": server_proxy}


# scenarios -----------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def small_get(http: aiohttp.ClientSession, e: Endpoint, n: int, concurrency: int = 16) -> dict[str, float]:
    for _ in range(50):
        async with http.get(e.url, headers=e.headers) as r:
            await r.read()
    times: list[float] = []
    failures = 0
    todo = iter(range(n))

    async def client() -> None:
        nonlocal failures
        for _ in todo:
            t0 = time.perf_counter()
            async with http.get(e.url, headers=e.headers) as r:
                if r.status != 200 or await r.read() != b"root":
                    failures += 1
            times.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"requests/s": n / elapsed, "p50 ms": percentile(times, .5) * 1000, "p99 ms": percentile(times, .99) * 1000,
            "failed": failures}


async def download(http: aiohttp.ClientSession, e: Endpoint, mib: int = 200) -> dict[str, float]:
    t0 = time.perf_counter()
    size, ok = 0, True
    try:
        async with http.get(e.url + f"big?mib={mib}", headers=e.headers) as r:
            ok = r.status == 200
            async for chunk in r.content.iter_chunked(1 << 20):
                size += len(chunk)
    except aiohttp.ClientError:
        ok = False
    elapsed = time.perf_counter() - t0
    ok = ok and size == mib * len(BLOCK)
    peak = e.server.rss_kib("VmHWM") / 1024 if e.server else float("nan")
    return {"MB/s": size / elapsed / 1e6 if ok else 0.0, "complete": 1.0 if ok else 0.0, "proxy peak RSS MB": peak}


async def upload(http: aiohttp.ClientSession, e: Endpoint, mib: int = 200) -> dict[str, float]:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(mib):
            yield BLOCK

    headers = {**e.headers, "Content-Length": str(mib * len(BLOCK))}
    t0 = time.perf_counter()
    ok = False
    try:
        async with http.post(e.url + "echo", data=body(), headers=headers) as r:
            ok = r.status == 200 and (await r.json())["size"] == mib * len(BLOCK)
    except (aiohttp.ClientError, ValueError):
        ok = False
    elapsed = time.perf_counter() - t0
    peak = e.server.rss_kib("VmHWM") / 1024 if e.server else float("nan")
    return {"MB/s": mib * len(BLOCK) / elapsed / 1e6 if ok else 0.0, "complete": 1.0 if ok else 0.0,
            "proxy peak RSS MB": peak}


async def websocket(http: aiohttp.ClientSession, e: Endpoint, n: int = 1000) -> dict[str, float]:
    url = "ws" + e.url[4:] + "ws"
    times = []
    async with http.ws_connect(url, headers=e.headers) as ws:
        for i in range(n + 50):
            t0 = time.perf_counter()
            await ws.send_str(f"message {i}")
            await ws.receive()
            if i >= 50:
                times.append(time.perf_counter() - t0)
    return {"p50 ms": percentile(times, .5) * 1000, "p99 ms": percentile(times, .99) * 1000}


async def cold_start(http: aiohttp.ClientSession, target: str) -> dict[str, float]:
    """From the first request (nothing running) to its first byte; direct: spawning the app until it answers."""
    if target == "direct":
        port = servers.free_port()
        t0 = time.perf_counter()
        proc = _spawn_backend(port)
        await wait_answer(http, f"http://127.0.0.1:{port}/", {})
        elapsed = time.perf_counter() - t0
        proc.terminate()
        proc.wait(10)
        return {"first byte s": elapsed}
    e = await STARTERS[target](http, warm=False)
    try:
        t0 = time.perf_counter()
        async with http.get(e.url, headers=e.headers) as r:
            await r.content.read(1)
        return {"first byte s": time.perf_counter() - t0}
    finally:
        e.stop()


def digest(mib: int) -> str:
    h = hashlib.sha256()
    for _ in range(mib):
        h.update(BLOCK)
    return h.hexdigest()


PROXY_TARGETS = ["direct", "Portico", "jupyter-server-proxy"]


async def run_scenario(http: aiohttp.ClientSession, name: str, target: str) -> dict[str, float]:
    if name == "proxy cold start":
        return await cold_start(http, target)
    e = await STARTERS[target](http)
    try:
        if name == "proxy small GET":
            return await small_get(http, e, int(os.environ.get("BENCH_PROXY_N", 3000)))
        if name == "proxy download":
            return await download(http, e)
        if name == "proxy upload":
            return await upload(http, e)
        if name == "proxy websocket":
            return await websocket(http, e)
        raise ValueError(name)
    finally:
        e.stop()
