"""The execution API against its peers, with real kernels: the same calls to Jupyter Server with
jupyter-server-nbmodel give the same statuses and shapes, and jupyter-mcp-server's HTTP execution
path runs code on Portico.  The peers live in .venv/peers (scripts/peers)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from portico_testing import Server, eventually, jupyter_server

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / ".venv" / "peers" / "bin"
Step = tuple[str, int, dict[str, str]]  # what was asked, the status, and the body's keys with their JSON types


@pytest.fixture(scope="module")
def peers() -> Path:
    subprocess.run([str(REPO / "scripts" / "peers")], check=True, capture_output=True, timeout=600)
    return PEERS


@pytest.fixture(scope="module")
def nbmodel(peers: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Jupyter Server with jupyter-server-nbmodel, from the peers' venv."""
    with jupyter_server([str(peers / "jupyter"), "server"], tmp_path_factory.mktemp("nbmodel"), "nb-token") as srv:
        assert any("jupyter_server_nbmodel" in line for line in srv.stderr), "".join(srv.stderr)
        yield srv


def shape(body: Any) -> dict[str, str]:
    return {key: type(value).__name__ for key, value in body.items()} if isinstance(body, dict) else {}


class Contract:
    """jupyter-server-nbmodel's calls, as its clients make them, recorded as steps."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str, gate: Path) -> None:
        self.http, self.url, self.gate = http, url.rstrip("/"), gate
        self.headers = {"Authorization": f"token {token}"}
        self.steps: list[Step] = []

    async def call(self, step: str, method: str, path: str, body: Any = None, record: bool = True) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=body, headers=self.headers) as r:
            text = await r.text()
            answer = (await r.json(content_type=None)) if text.strip() else None
        if record:
            self.steps.append((step, r.status, shape(answer)))
        return r.status, answer

    async def until(self, step: str, path: str, done: Any) -> Any:
        """Poll until done(status, body); the last poll is recorded."""
        last: list[Any] = []

        async def polled() -> bool:
            status, body = await self.call(step, "GET", path, record=False)
            last[:] = [status, body]
            return bool(done(status, body))

        await eventually(polled, step, 60)
        self.steps.append((step, last[0], shape(last[1])))
        return last[1]

    async def run(self, kernel: str) -> list[Step]:
        execute = f"/api/kernels/{kernel}/execute"
        _, submitted = await self.call("submit", "POST", execute, {"code": "print(6*7)"})
        await self.until("done", submitted["request_url"], lambda s, b: s != 202)
        gated = "print('first', flush=True)\nimport os, time\n"
        gated += f"while not os.path.exists({str(self.gate)!r}): time.sleep(0.01)"
        _, running = await self.call("submit gated", "POST", execute, {"code": gated})
        partial = "pending with partial output"
        await self.until(partial, running["request_url"], lambda s, b: "first" in b.get("outputs", ""))
        self.gate.touch()
        await self.until("gated done", running["request_url"], lambda s, b: s != 202)
        _, asking = await self.call("submit input", "POST", execute, {"code": "print('hi', input('who? '))"})
        await self.until("input asked", asking["request_url"], lambda s, b: s == 300)
        await self.call("input", "POST", f"/api/kernels/{kernel}/input", {"input": "ada"})
        await self.until("input done", asking["request_url"], lambda s, b: s != 202)
        _, failing = await self.call("submit error", "POST", execute, {"code": "1/0"})
        await self.until("error done", failing["request_url"], lambda s, b: s != 202)
        code = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"
        _, sleeping = await self.call("submit to cancel", "POST", execute, {"code": code})
        await self.until("running", sleeping["request_url"], lambda s, b: "sleeping" in b.get("outputs", ""))
        await self.call("cancel", "DELETE", sleeping["request_url"])
        await self.until("cancelled done", sleeping["request_url"], lambda s, b: s != 202)
        missing = "00000000-0000-0000-0000-000000000000"
        await self.call("unknown kernel", "POST", f"/api/kernels/{missing}/execute", {"code": "1"})
        await self.call("unknown request", "GET", f"/api/kernels/{kernel}/requests/{missing}")
        async with self.http.post(self.url + execute, json={"code": "1"}) as r:
            self.steps.append(("no token", 401 if r.status in (401, 403) else r.status, {}))  # 403 in Jupyter Server
        return self.steps


async def test_the_nbmodel_calls_give_the_same_statuses_and_shapes(
    http: aiohttp.ClientSession, server: Server, nbmodel: Server, tmp_path: Path
) -> None:
    runs = []
    for srv, gate in ((nbmodel, tmp_path / "nbmodel-gate"), (server, tmp_path / "portico-gate")):
        headers = {"Authorization": f"token {srv.token}"}
        async with http.post(srv.url + "api/kernels", json={"name": "python3"}, headers=headers) as r:
            assert r.status == 201, await r.text()
            kernel = (await r.json())["id"]
        runs.append(await Contract(http, srv.url, srv.token, gate).run(kernel))
    theirs, ours = runs
    assert [(step, status) for step, status, _ in ours] == [(step, status) for step, status, _ in theirs]
    for (step, _, their_shape), (_, _, our_shape) in zip(theirs, ours, strict=True):
        missing = {k: t for k, t in their_shape.items() if our_shape.get(k) != t and t != "NoneType"}
        assert not missing, f"{step}: Portico lacks or retypes {missing} (nbmodel {their_shape}, Portico {our_shape})"


async def test_jupyter_mcp_servers_http_execution_runs_on_portico(
    http: aiohttp.ClientSession, server: Server, peers: Path
) -> None:
    async with http.post(server.url + "api/kernels", json={}, headers=server.headers) as r:
        kernel = (await r.json())["id"]
    script = (
        "import asyncio, sys\n"
        "from jupyter_mcp_server.utils import execute_via_execution_stack_http\n"
        "out = asyncio.run(execute_via_execution_stack_http(server_url=sys.argv[1], token=sys.argv[2],"
        " kernel_id=sys.argv[3], code='print(6*7)', timeout=60))\n"
        "print(repr(out))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        str(peers / "python"), "-c", script, server.url, server.token, kernel,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "42" in out.decode(), out.decode() + err.decode()[-3000:]
