"""Plugin packages from PyPI, written for jupyter-server-proxy, run unchanged through their entry points."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import Server, start_server

PANEL_APP = "import panel as pn\n\npn.panel('Hello from a Panel app').servable()\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("plugins")
    (root / "examples").mkdir()
    (root / "examples" / "app.py").write_text(PANEL_APP)
    bin_dir = str(Path(sys.executable).parent)  # `panel` is on PATH, as in an activated environment
    srv = start_server("--root-dir", str(root), "--proxy-entry-points", "true", env={"PATH": bin_dir + os.pathsep + os.environ["PATH"]})
    yield srv
    srv.stop()


async def test_hello_jupyter_proxy_over_its_unix_socket(http: aiohttp.ClientSession, server: Server) -> None:
    async with http.get(server.url + "server-proxy/servers-info", headers=server.headers) as r:
        names = {s["name"] for s in (await r.json())["server_processes"]}
    assert {"hello", "panel"} <= names
    async with http.get(server.url + "hello/some/path?x=1", headers=server.headers) as r:
        text = await r.text()
        assert r.status == 200 and "Hello Jupyter-server-proxy" in text
        assert "Request path is <code>/some/path?x=1</code>" in text
        assert server.token not in text  # neither the token nor the Authorization header reached it
    async with http.get(server.url + "api/proxy/servers/hello", headers=server.headers) as r:
        info = await r.json()
    assert info["state"] == "running" and info["backend"].startswith("unix:")


async def test_jupyter_panel_proxy_with_its_websocket(http: aiohttp.ClientSession, server: Server) -> None:
    async with http.get(server.url + "panel/app", headers=server.headers) as r:
        page = await r.text()
        assert r.status == 200, page[-2000:]
    token = re.search(r'"token":\s*"([^"]+)"', page) or re.search(r"token=([\w.-]+)", page)
    assert token, page[:3000]
    async with http.ws_connect(server.ws_url + "panel/app/ws", headers=server.headers,
                               protocols=("bokeh", token.group(1))) as ws:
        assert ws.protocol == "bokeh"
        msg = await ws.receive(timeout=60)
        assert msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["msgtype"] == "ACK"
