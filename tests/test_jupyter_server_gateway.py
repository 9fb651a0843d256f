"""The real Jupyter Server in gateway mode, with Portico as its gateway (JupyterLab's path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import KernelClient, Server, eventually, stdout_of


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def jupyter_server(server: Server, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            f"--gateway-url={server.url.rstrip('/')}",
            f"--GatewayClient.auth_token={server.token}",
            "--IdentityProvider.token=js-token",
            "--allow-root",
            f"--port={port}",
            "--ip=127.0.0.1",
            "--no-browser",
            f"--ServerApp.root_dir={tmp_path}",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    ready = threading.Event()
    lines: list[str] = []

    def watch() -> None:
        with proc.stderr:  # type: ignore[union-attr]
            for line in proc.stderr:  # type: ignore[union-attr]
                lines.append(line)
                if "is running at" in line:
                    ready.set()
        ready.set()  # it exited: the assertion below shows why

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert ready.wait(60) and proc.poll() is None, "".join(lines)
        yield Server(proc, f"http://127.0.0.1:{port}/", "js-token", lines, watcher)  # type: ignore[arg-type]
    finally:
        proc.terminate()
        proc.wait(30)
        watcher.join(5)


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
