"""Log lines: JSON format, one access line per request and per WebSocket session."""

from __future__ import annotations

import json

import aiohttp
import yaml

from portico_testing import KernelClient, Server, eventually, start_kernel, start_server


async def test_json_logs_with_access_lines(http: aiohttp.ClientSession) -> None:
    srv = start_server("--log-format", "json")
    try:
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid)
        await client.execute("1")
        await client.close()
        async with http.delete(f"{srv.url}api/kernels/{kid}", headers=srv.headers):
            pass
        await eventually(
            lambda: any(
                line.startswith("{") and json.loads(line).get("path", "").endswith("/channels")
                for line in list(srv.stderr)
            ),
            "the WebSocket's access line",
        )
    finally:
        srv.stop()
    entries = [json.loads(line) for line in srv.stderr if line.startswith("{")]
    access = [e for e in entries if e["logger"] == "aiohttp.access"]
    ws = [e for e in access if e["path"].endswith("/channels")]
    assert len(ws) == 1 and ws[0]["status"] == 101 and ws[0]["seconds"] > 0
    assert any(e["method"] == "POST" and e["status"] == 201 for e in access)
    assert any(f"kernel {kid} started" in e["message"] for e in entries)
    assert all(srv.token not in json.dumps(e) for e in entries)


async def test_the_api_document_is_served(http: aiohttp.ClientSession, server: Server) -> None:
    async with http.get(server.url + "api/spec.yaml", headers=server.headers) as r:
        doc = yaml.safe_load(await r.text())
    async with http.get(server.url + "api/spec.json", headers=server.headers) as r:
        assert await r.json() == doc
    assert doc["openapi"].startswith("3.") and "/api/kernels" in doc["paths"]
