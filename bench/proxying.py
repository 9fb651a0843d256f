"""The process proxy's scenarios: Portico and jupyter-server-proxy in front of the same app,
and the app reached directly (the limit).  The app is tests/proxy/backend.py (aiohttp)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
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
    return subprocess.Popen(
        [sys.executable, BACKEND, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=servers._die_with_parent,
    )


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
    server = servers._spawn(
        "Portico",
        [
            str(servers.PORTICO),
            "--port",
            str(port),
            "--token",
            servers.TOKEN,
            "--pool-size",
            "0",
            "--log-level",
            "warning",
            "--proxy-entry-points",
            "false",
            "--servers",
            json.dumps({"app": app_options()}),
            "--max-body-size",
            str(1 << 40),
        ],
        port,
    )
    await servers.wait_ready(server, "api")
    endpoint = Endpoint(server.url + "app/", server.headers, server, server.stop)
    if warm:
        await wait_answer(http, endpoint.url, endpoint.headers)
    return endpoint


async def server_proxy(http: aiohttp.ClientSession, warm: bool = True) -> Endpoint:
    port = servers.free_port()
    config = Path(tempfile.mkdtemp(prefix="bench-jsp-")) / "jupyter_server_config.py"
    config.write_text(f"c.ServerProxy.servers = {{'app': {app_options()!r}}}\n")
    server = servers._spawn(
        "jupyter-server-proxy",
        [
            str(servers.ANCHORS / "jupyter-server"),
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={servers.TOKEN}",
            "--allow-root",
            "--no-browser",
            f"--config={config}",
            "--log-level=WARN",
            "--ServerApp.max_body_size=" + str(1 << 40),
            "--ServerApp.max_buffer_size=" + str(1 << 40),
        ],
        port,
    )
    await servers.wait_ready(server)
    endpoint = Endpoint(server.url + "app/", server.headers, server, server.stop)
    if warm:
        await wait_answer(http, endpoint.url, endpoint.headers)
    return endpoint


async def in_front(http: aiohttp.ClientSession, command: Callable[[int, int], list[str]]) -> Endpoint:
    """The app behind a reference proxy that command(port, app_port) starts, reached at port."""
    app = await direct(http)
    port = servers.free_port()
    proc = subprocess.Popen(
        command(port, int(app.url.split(":")[2].strip("/"))),
        stderr=subprocess.DEVNULL,
        preexec_fn=servers._die_with_parent,
    )

    def stop() -> None:
        proc.terminate()
        proc.wait(10)
        app.stop()

    url = f"http://127.0.0.1:{port}/"
    await wait_answer(http, url, {})
    return Endpoint(url, {}, None, stop)


async def plain_relay(http: aiohttp.ClientSession) -> Endpoint:
    """The app behind bench/relay.py: what a Python proxy can do at best, for the download."""
    return await in_front(
        http,
        lambda port, app_port: [sys.executable, str(Path(__file__).with_name("relay.py")), str(port), str(app_port)],
    )


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {root}/body; proxy_temp_path {root}/proxy; fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
  upstream app {{ server 127.0.0.1:{app_port}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_buffer_size 1m; proxy_buffers 4 1m; proxy_busy_buffers_size 1m;
    }}
  }}
}}
"""


async def nginx(http: aiohttp.ClientSession) -> Endpoint:
    """The app behind Debian's nginx as a streaming reverse proxy (proxy_buffering off), for the download."""

    def command(port: int, app_port: int) -> list[str]:
        root = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=port, app_port=app_port))
        return [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(root / "nginx.conf"), "-p", str(root)]

    return await in_front(http, command)


STARTERS: dict[str, Callable[..., Awaitable[Endpoint]]] = {
    "direct": direct,
    "Portico": portico,
    "jupyter-server-proxy": server_proxy,
    "plain relay": plain_relay,
    "nginx": nginx,
}


# scenarios -----------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


WRK_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 or body ~= "root" then bad = bad + 1 end
end
function done(summary, latency, requests)
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  for _, thread in ipairs(threads) do failed = failed + thread:get("bad") end
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration, failed,
                         latency:percentile(50), latency:percentile(99)))
end
"""


def header_args(e: Endpoint) -> list[str]:
    """The endpoint's headers as wrk's and curl's -H arguments."""
    return [arg for name, value in e.headers.items() for arg in ("-H", f"{name}: {value}")]


async def wrk(e: Endpoint, seconds: float, concurrency: int) -> dict[str, float]:
    """Debian's wrk against the app's root: requests/s, p50 and p99, and answers that weren't 200 "root"."""
    script = Path(tempfile.mkdtemp(prefix="bench-wrk-")) / "check.lua"
    script.write_text(WRK_SCRIPT)
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        *header_args(e),
        e.url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    line = next((text for text in out.decode().splitlines() if text.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out.decode()[-500:]} {err.decode()[-500:]}")
    requests, duration_us, failed, p50_us, p99_us = (int(x) for x in line.split()[1:])
    return {
        "requests/s": requests / (duration_us / 1e6),
        "p50 ms": p50_us / 1000,
        "p99 ms": p99_us / 1000,
        "failed": failed,
    }


async def small_get(
    http: aiohttp.ClientSession, e: Endpoint, seconds: float, concurrency: int = 16
) -> dict[str, float]:
    await wrk(e, 1, concurrency)  # connections made, backends warm
    return await wrk(e, seconds, concurrency)


async def curl(e: Endpoint, path: str, *args: str) -> tuple[str, int, int, float]:
    """curl's answer body, status, bytes downloaded and total seconds."""
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-s",
        "-w",
        "\\n%{http_code} %{size_download} %{time_total}",
        *header_args(e),
        *args,
        e.url + path,
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    body, _, summary = out.decode("latin-1").rpartition("\n")
    code, size, seconds = summary.split()
    return body, int(code), int(size), float(seconds)


async def download(http: aiohttp.ClientSession, e: Endpoint, mib: int = 200) -> dict[str, float]:
    _, code, size, elapsed = await curl(e, f"big?mib={mib}", "-o", "/dev/null")
    ok = code == 200 and size == mib * len(BLOCK)
    peak = e.server.rss_kib("VmHWM") / 1024 if e.server else float("nan")
    return {"MB/s": size / elapsed / 1e6 if ok else 0.0, "complete": 1.0 if ok else 0.0, "proxy peak RSS MB": peak}


def upload_file(mib: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"portico-bench-upload-{mib}.bin"
    if not path.exists() or path.stat().st_size != mib * len(BLOCK):
        with open(path, "wb") as f:
            for _ in range(mib):
                f.write(BLOCK)
    return path


async def upload(http: aiohttp.ClientSession, e: Endpoint, mib: int = 200) -> dict[str, float]:
    body, code, _, elapsed = await curl(e, "echo", "-X", "POST", "-H", "Expect:", "-T", str(upload_file(mib)))
    try:
        ok = code == 200 and json.loads(body)["size"] == mib * len(BLOCK)
    except (ValueError, KeyError):
        ok = False
    peak = e.server.rss_kib("VmHWM") / 1024 if e.server else float("nan")
    return {
        "MB/s": mib * len(BLOCK) / elapsed / 1e6 if ok else 0.0,
        "complete": 1.0 if ok else 0.0,
        "proxy peak RSS MB": peak,
    }


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
    return {"p50 ms": percentile(times, 0.5) * 1000, "p99 ms": percentile(times, 0.99) * 1000}


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
            return await small_get(http, e, float(os.environ.get("BENCH_PROXY_SECONDS", 5)))
        if name == "proxy download":
            return await download(http, e)
        if name == "proxy upload":
            return await upload(http, e)
        if name == "proxy websocket":
            return await websocket(http, e)
        raise ValueError(name)
    finally:
        e.stop()
