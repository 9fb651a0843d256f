"""The staged shutdown (portico/lifecycle.py), seen from outside: a real server, a real signal."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from portico.errors import Unavailable
from portico.kernels.manager import Kernels
from portico.kernels.requests import start_request
from portico.kernels.specs import Specs
from portico.settings import Settings
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


async def test_kernels_refuse_new_work_once_shutdown_begins_and_end_what_they_started(tmp_path: Path) -> None:
    """The lifecycle's stages on the kernels component itself: after stop_accepting a start is 503
    (what a notebook API's pool or a late request gets), and end() leaves no kernel process."""
    settings = Settings(token="t", pool_size=0, root_dir=str(tmp_path))
    kernels = Kernels(settings, Specs(settings.base_url, settings.default_kernel_name))
    await kernels.start_up()
    kernel = await kernels.start(start_request(settings))
    pid = kernel.km.provisioner.process.pid  # type: ignore[union-attr]
    kernels.stop_accepting()
    with pytest.raises(Unavailable, match="shutting down; no new kernels") as refused:
        await kernels.start(start_request(settings))
    assert refused.value.status == 503
    await kernels.end()
    assert kernel.id not in kernels.kernels
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
