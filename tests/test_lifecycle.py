"""The staged shutdown (portico/lifecycle.py), seen from outside: a real server, a real signal."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import aiohttp

from portico_testing import eventually, start_server

BACKEND = str(Path(__file__).parent / "proxy" / "backend.py")


async def test_a_request_still_running_when_shutdown_timeout_ends_is_cut_and_logged(
    http: aiohttp.ClientSession,
) -> None:
    servers = {"app": {"command": [sys.executable, BACKEND, "--port", "{port}"], "timeout": 20}}
    server = start_server("--servers", json.dumps(servers), "--shutdown-timeout", "0.5")
    try:
        async with http.get(server.url + "app/echo", headers=server.headers) as r:
            assert r.status == 200  # the backend runs
        slow = asyncio.create_task(http.get(server.url + "app/slow?s=60", headers=server.headers))

        async def in_flight() -> bool:
            async with http.get(server.url + "metrics", headers=server.headers) as r:
                m = re.search(r"^portico_http_requests_in_flight (\S+)$", await r.text(), re.M)
            return m is not None and float(m.group(1)) >= 2  # the slow one and this one

        await eventually(in_flight, "the slow request reaching Portico")
        server.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.proc.wait, 30) == 0  # not the backend's 60 s
        try:
            (await slow).release()
        except aiohttp.ClientError:
            pass  # cut: the connection closes without an answer
        log = "".join(server.stderr)
        assert "1 requests were still running when shutdown_timeout ran out and were cut short: GET /app/slow" in log
    finally:
        server.stop()
