"""Every route family, every error status it can return: one JSON body, {"message", "reason"}.

The app runs in-process (one real kernel for the notebook API, real child processes for the
proxy); each answer is checked for its status, its content type and the body's shape.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from portico.errors import (BadGateway, BadRequest, CellFailed, Close, Conflict, Forbidden, GatewayTimeout,
                            LimitReached, MethodNotAllowed, NotFound, PorticoError, SettingsError, Unauthorized,
                            Unavailable)
from portico_testing import TOKEN_HEADERS, eventually, in_process, write_notebook

CELLS = ["import time, os", "# GET /ok\nprint('ok')", "# GET /raises\nraise ValueError('no')",
         "# GET /slow timeout=0.5\ntime.sleep(30)"]
H = TOKEN_HEADERS
# (method, path, request options, the status expected); a path starting "!" goes without the token
CASES: list[tuple[str, str, dict[str, Any], int]] = [
    # server
    ("GET", "!api/status", {}, 401),
    ("GET", "api/kernels/nope/channels", {"headers": {**H, "Origin": "http://evil.example", "Connection": "Upgrade",
                                                     "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}}, 403),
    ("DELETE", "api/status", {}, 405),  # not the root notebook's 404: /api is Portico's
    ("POST", "", {}, 405),  # the page's launcher
    ("GET", "no/such/route", {}, 404),
    ("POST", "api/kernels", {"data": b"x" * 4096, "headers": {**H, "Content-Type": "application/json"}}, 413),
    # kernels, kernelspecs, sessions
    ("GET", "api/kernels/nope", {}, 404),
    ("POST", "api/kernels", {"data": b"{not json", "headers": {**H, "Content-Type": "application/json"}}, 400),
    ("POST", "api/kernels", {"json": {"name": 7}}, 400),
    ("POST", "api/kernels", {"json": {"name": "no-such-kernel"}}, 404),
    ("POST", "api/kernels/nope/interrupt", {}, 404),
    ("GET", "api/kernels/nope/channels", {}, 404),
    ("GET", "api/kernelspecs/nope", {}, 404),
    ("GET", "kernelspecs/nope/logo-64x64.png", {}, 404),
    ("GET", "api/sessions/nope", {}, 404),
    ("POST", "api/sessions", {"json": {"path": 3}}, 400),
    # contents
    ("GET", "api/contents/missing.txt", {}, 404),
    ("GET", "api/contents/..%2F..%2Fetc", {}, 403),
    ("GET", "api/contents/.hidden", {}, 404),
    ("PUT", "api/contents/a.txt", {"json": {"type": "file"}}, 400),
    ("POST", "api/contents/a.txt/checkpoints/zz", {}, 404),
    ("PUT", "api/contents/a.txt/checkpoints", {}, 405),
    ("GET", "files/missing.txt", {}, 404),
    # the page
    ("GET", "_page/no-such-asset.js", {}, 404),
    # the process proxy
    ("GET", "api/proxy/servers/nope", {}, 404),
    ("POST", "api/proxy/servers/nope/start", {}, 404),
    ("GET", "proxy/example.com:80/", {}, 403),
    ("GET", "crashes/", {}, 502),
    # the notebook API
    ("GET", "api/nope", {}, 404),
    ("POST", "ok", {}, 405),
    ("GET", "raises", {}, 500),
    ("GET", "slow", {}, 504),
    ("GET", "public/missing.html", {}, 404),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("errors")
    (root / ".hidden").write_text("hidden")
    (root / "a.txt").write_text("a")
    (root / "public").mkdir()
    write_notebook(root / "api.ipynb", CELLS)
    return root


@pytest.fixture
async def client(root: Path) -> AsyncIterator[TestClient[Any, Any]]:
    crashes = {"command": [sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"], "timeout": 10}
    async with in_process(root_dir=str(root), notebook=[str(root / "api.ipynb")], notebook_pool_max=1,
                          notebook_queue_size=0, notebook_public_dir=str(root / "public"), max_body_size=1024,
                          servers={"crashes": crashes}) as client:
        yield client


async def test_every_error_is_one_json_body(client: TestClient[Any, Any]) -> None:
    seen = []
    for method, path, options, status in CASES:
        options = {"headers": H, **options}
        if path.startswith("!"):
            path, options = path[1:], {k: v for k, v in options.items() if k != "headers"}
        async with client.request(method, "/" + path, **options) as r:
            body = await r.read()
            seen.append((method, path, r.status))
            assert r.status == status, (method, path, body[:300])
            assert r.content_type == "application/json", (method, path)
        error = orjson.loads(body)
        assert isinstance(error, dict) and isinstance(error["message"], str) and error["message"], (method, path)
        assert error["reason"] is None or isinstance(error["reason"], str), (method, path)
    assert {s for _, _, s in seen} == {400, 401, 403, 404, 405, 413, 500, 502, 504}


async def test_a_full_notebook_queue_is_503(client: TestClient[Any, Any]) -> None:
    async def busy() -> bool:
        async with client.get("/api/status", headers=H) as r:
            return bool((await r.json())["notebooks"][0]["idle"] == 0)

    slow = asyncio.create_task(client.get("/slow", headers=H))
    await eventually(busy, "the notebook API's one kernel taking the slow request")
    async with client.get("/ok", headers=H) as r:
        assert (r.status, r.content_type, "Retry-After" in r.headers) == (503, "application/json", True)
        assert (await r.json())["message"]
    (await slow).release()


async def test_limit_reached(root: Path) -> None:
    """403 at max_kernels, with its own reason."""
    async with in_process(root_dir=str(root), max_kernels=1) as client:
        async with client.post("/api/kernels", json={}, headers=H) as r:
            assert r.status == 201
            kernel = (await r.json())["id"]
        async with client.post("/api/kernels", json={}, headers=H) as r:
            assert (r.status, (await r.json())["reason"]) == (403, "Resource Limit")
        async with client.delete(f"/api/kernels/{kernel}", headers=H) as r:
            assert r.status == 204


def test_the_tree_maps_each_error_to_a_status_and_a_close_code() -> None:
    statuses = {PorticoError: 500, SettingsError: 500, BadRequest: 400, Unauthorized: 401, Forbidden: 403,
                LimitReached: 403, NotFound: 404, MethodNotAllowed: 405, Conflict: 409, CellFailed: 500,
                BadGateway: 502, Unavailable: 503, GatewayTimeout: 504}
    for kind, status in statuses.items():
        assert issubclass(kind, PorticoError) and kind("x").status == status
        assert kind("x").close_code in (Close.INTERNAL, Close.TRY_AGAIN)
    assert Unavailable("x").close_code == Close.TRY_AGAIN
    assert BadGateway("refused", status=401).status == 401  # a backend's own refusal keeps its status
    assert isinstance(SettingsError("x"), ValueError)
