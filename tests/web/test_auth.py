"""Token, Origin and CORS, end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from portico_testing import KernelClient, LocalServer, Server, serving, start_kernel


@pytest.fixture
async def cors_server() -> AsyncIterator[LocalServer]:
    async with serving(allow_origin_pat=r"https://app\.example\.com", allow_credentials=True, max_age=600) as srv:
        yield srv


async def test_token_in_header_bearer_or_query(http: aiohttp.ClientSession, server: Server) -> None:
    for headers, query in [({"Authorization": f"token {server.token}"}, ""),
                           ({"Authorization": f"Bearer {server.token}"}, ""),
                           ({}, f"?token={server.token}")]:
        async with http.get(server.url + "api/kernels" + query, headers=headers) as r:
            assert r.status == 200


@pytest.mark.parametrize("headers,query", [({}, ""), ({"Authorization": "token wrong"}, ""), ({}, "?token=wrong"),
                                           ({"Authorization": "Basic dXNlcjpwYXNz"}, "")])
async def test_missing_or_wrong_token_is_401_json(http: aiohttp.ClientSession, server: Server,
                                                  headers: dict[str, str], query: str) -> None:
    for path in ("api/kernels", "api/kernelspecs", "metrics", "api/sessions", "kernelspecs/python3/logo-64x64.png"):
        async with http.get(server.url + path + query, headers=headers) as r:
            assert r.status == 401
            body = await r.json()
            assert body["reason"] == "Unauthorized" and "token" in body["message"]


async def test_websocket_needs_the_token(http: aiohttp.ClientSession, server: Server, kernel: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await http.ws_connect(f"{server.ws_url}api/kernels/{kernel}/channels")
    assert e.value.status == 401


async def test_foreign_origin_websocket_refused(http: aiohttp.ClientSession, server: Server, kernel: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await KernelClient.connect(http, server, kernel, origin="https://evil.example.com")
    assert e.value.status == 403
    host = server.url.split("/")[2]
    same = await KernelClient.connect(http, server, kernel, origin=f"http://{host}")
    reply, _ = await same.execute("1")
    assert reply["content"]["status"] == "ok"
    await same.close()


async def test_allowed_origin_pattern_for_websocket_and_cors(http: aiohttp.ClientSession, cors_server: Server) -> None:
    kid = await start_kernel(http, cors_server)
    ok = await KernelClient.connect(http, cors_server, kid, origin="https://app.example.com")
    await ok.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await KernelClient.connect(http, cors_server, kid, origin="https://app.example.com.evil.org")
    # preflight: no token needed
    async with http.options(cors_server.url + "api/kernels", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert r.headers["Access-Control-Allow-Credentials"] == "true"
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert r.headers["Access-Control-Max-Age"] == "600"
    async with http.get(cors_server.url + "api/kernels", headers={**cors_server.headers,
                                                                   "Origin": "https://app.example.com"}) as r:
        assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert "Location" in r.headers["Access-Control-Expose-Headers"]
    async with http.get(cors_server.url + "api/kernels", headers={**cors_server.headers,
                                                                   "Origin": "https://other.example.com"}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers
    async with http.delete(f"{cors_server.url}api/kernels/{kid}", headers=cors_server.headers):
        pass


async def test_no_cors_headers_by_default(http: aiohttp.ClientSession, server: Server) -> None:
    async with http.options(server.url + "api/kernels", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}) as r:
        assert r.status == 204 and "Access-Control-Allow-Origin" not in r.headers


async def test_metrics_can_be_public(http: aiohttp.ClientSession) -> None:
    async with serving(metrics_public=True) as srv:
        async with http.get(srv.url + "metrics") as r:
            assert r.status == 200 and "portico_kernels" in await r.text()
        async with http.get(srv.url + "api/kernels") as r:
            assert r.status == 401
