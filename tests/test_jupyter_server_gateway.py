"""The real Jupyter Server in gateway mode, with Portico as its gateway (JupyterLab's path)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import KernelClient, Server, eventually, stdout_of
from portico_testing import jupyter_server as peer


@pytest.fixture
def jupyter_server(server: Server, tmp_path: Path) -> Iterator[Server]:
    gateway = [f"--gateway-url={server.url.rstrip('/')}", f"--GatewayClient.auth_token={server.token}"]
    with peer([sys.executable, "-m", "jupyter_server", *gateway], tmp_path, "js-token", 60) as js:
        yield js


async def test_jupyter_server_uses_portico_as_its_gateway(
    http: aiohttp.ClientSession, server: Server, jupyter_server: Server
) -> None:
    js = jupyter_server

    async def listening() -> bool:  # it logs its URL a moment before it listens
        try:
            async with http.get(js.url + "api", headers=js.headers) as r:
                return r.status == 200
        except aiohttp.ClientConnectorError:
            return False

    await eventually(listening, "Jupyter Server listening")
    async with http.get(js.url + "api/kernelspecs", headers=js.headers) as r:
        assert r.status == 200, await r.text()
        assert "python3" in (await r.json())["kernelspecs"]
    async with http.post(js.url + "api/kernels", json={"name": "python3"}, headers=js.headers) as r:
        assert r.status == 201, await r.text()
        kid = (await r.json())["id"]
    async with http.get(f"{server.url}api/kernels/{kid}", headers=server.headers) as r:
        assert r.status == 200, "the kernel runs in Portico"
    client = await KernelClient.connect(http, js, kid, v1=False)
    reply, outputs = await client.execute("print('through the gateway')")
    assert reply["content"]["status"] == "ok"
    assert stdout_of(outputs) == "through the gateway\n"
    await client.close()
    async with http.delete(f"{js.url}api/kernels/{kid}", headers=js.headers) as r:
        assert r.status == 204, await r.text()
    async with http.get(f"{server.url}api/kernels/{kid}", headers=server.headers) as r:
        assert r.status == 404
