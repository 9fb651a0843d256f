"""The same notebook and the same requests against Jupyter Kernel Gateway's notebook-http mode
and Portico: the answers agree wherever Kernel Gateway is right, and differ as documented."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import Server, die_with_parent, eventually, start_server, write_notebook

from .test_routes import CELLS

KERNEL_GATEWAY = Path(sys.executable).parent / "jupyter-kernelgateway"
REQUESTS: list[tuple[str, str, dict[str, object]]] = [
    ("GET", "/hello/world", {}),
    ("GET", "/served", {}),  # KERNEL_GATEWAY=1 in both servers' kernels
    ("GET", "/hello/person?person=ann&person=bo", {}),
    ("GET", "/hello/zed", {}),
    ("POST", "/people", {"json": {"id": "ann", "age": 7}}),
    ("PUT", "/people/bo", {"data": '{"id": "bo"}', "headers": {"Content-Type": "application/json"}}),
    ("GET", "/people", {}),
    ("DELETE", "/people/ann", {}),
    ("POST", "/echo?a=1&a=2", {"data": {"name": "x", "tags": "y"}}),
    ("POST", "/echo", {"data": "plain words", "headers": {"Content-Type": "text/plain"}}),
    ("GET", "/stderr", {}),
    ("GET", "/joined", {}),
]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("kg")
    notebook = write_notebook(root / "api.ipynb", CELLS)
    portico = start_server("--notebook", notebook, "--notebook-pool-max", "1")
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(KERNEL_GATEWAY),
            f"--KernelGatewayApp.port={port}",
            "--KernelGatewayApp.ip=127.0.0.1",
            "--KernelGatewayApp.api=kernel_gateway.notebook_http",
            f"--KernelGatewayApp.seed_uri={notebook}",
            "--KernelGatewayApp.auth_token=kg-token",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=root,
        preexec_fn=die_with_parent,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "runtime")},
    )
    kernel_gateway = Server(proc, f"http://127.0.0.1:{port}/", "kg-token")
    yield portico, kernel_gateway
    portico.stop()
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    shutil.rmtree(root / "runtime", ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def ask(
    http: aiohttp.ClientSession, server: Server, method: str, path: str, options: dict[str, object]
) -> tuple[int, str, str, str]:
    kw = dict(options)
    headers = {**server.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
    async with http.request(method, server.url + path.lstrip("/"), headers=headers, **kw) as r:  # type: ignore[arg-type]
        # Tornado adds an ETag of the body to every GET: Portico does not (the notebook's own ETag, from
        # ResponseInfo, is compared on the other verbs)
        return r.status, r.content_type, r.headers.get("ETag", "") if method != "GET" else "", await r.text()


async def ready(http: aiohttp.ClientSession, server: Server) -> None:
    async def serving_hello() -> bool:
        try:
            return (await ask(http, server, "GET", "/hello/world", {}))[0] == 200
        except aiohttp.ClientError:
            return False

    await eventually(serving_hello, f"{server.url} serving the notebook", 60)


async def test_the_same_answers_as_kernel_gateway(http: aiohttp.ClientSession, both: tuple[Server, Server]) -> None:
    portico, kernel_gateway = both
    await ready(http, kernel_gateway)
    for method, path, options in REQUESTS:
        ours = await ask(http, portico, method, path, options)
        theirs = await ask(http, kernel_gateway, method, path, options)
        if path.startswith("/echo"):  # the REQUEST bundle: the same but for the headers' transport details
            mine, kg = json.loads(ours[3]), json.loads(theirs[3])
            assert (mine["body"], mine["args"], mine["path"]) == (kg["body"], kg["args"], kg["path"]), path
            assert ours[:3] == theirs[:3], path
            continue
        assert ours == theirs, f"{method} {path}"


async def test_where_portico_departs_on_purpose(http: aiohttp.ClientSession, both: tuple[Server, Server]) -> None:
    portico, kernel_gateway = both
    await ready(http, kernel_gateway)
    # an error: Kernel Gateway's text body, Portico's JSON error body (same status)
    ours, theirs = await ask(http, portico, "GET", "/error", {}), await ask(http, kernel_gateway, "GET", "/error", {})
    assert ours[0] == theirs[0] == 500
    assert "ValueError: no such thing" in theirs[3] and json.loads(ours[3])["evalue"] == "no such thing"
    # an execute_result: the same JSON bundle, labelled application/json instead of text/plain
    ours, theirs = await ask(http, portico, "GET", "/result", {}), await ask(http, kernel_gateway, "GET", "/result", {})
    assert json.loads(ours[3]) == json.loads(theirs[3]) and (ours[1], theirs[1]) == ("application/json", "text/plain")
    # a malformed ResponseInfo: a 500 that says why, where Kernel Gateway answers an empty 200
    ours, theirs = (
        await ask(http, portico, "GET", "/bad-info", {}),
        await ask(http, kernel_gateway, "GET", "/bad-info", {}),
    )
    assert ours[0] == 500 and "must print one JSON object" in ours[3]
    assert (theirs[0], theirs[3]) == (200, "")
    # text after an annotation's path: both start; Kernel Gateway takes the whole rest of the line as the
    # path (listed so in its Swagger document, and no request reaches it), Portico serves the path alone
    ours, theirs = (
        await ask(http, portico, "GET", "/fakeprint", {}),
        await ask(http, kernel_gateway, "GET", "/fakeprint", {}),
    )
    assert (ours[0], ours[3], theirs[0]) == (200, "fake\n", 404)
    theirs_spec = json.loads((await ask(http, kernel_gateway, "GET", "/_api/spec/swagger.json", {}))[3])
    assert "/fakeprint 'I am not a real lang!'" in theirs_spec["paths"]
