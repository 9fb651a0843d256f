"""The REST API against a real server and real ipykernel kernels."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from portico_testing import KernelClient, Server, serving, start_kernel, stdout_of

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


async def get(http: aiohttp.ClientSession, server: Server, path: str) -> tuple[int, object]:
    async with http.get(server.url + path, headers=server.headers) as r:
        return r.status, await r.json()


async def test_api_root_and_status(http: aiohttp.ClientSession, server: Server) -> None:
    assert await get(http, server, "api") == (200, {"version": "0.1.0"})
    status, body = await get(http, server, "api/status")
    assert status == 200 and isinstance(body, dict)
    assert TIMESTAMP.match(body["started"]) and TIMESTAMP.match(body["last_activity"])
    assert {"kernels", "connections"} <= body.keys()


async def test_kernelspecs_and_resources(http: aiohttp.ClientSession, server: Server) -> None:
    status, body = await get(http, server, "api/kernelspecs")
    assert status == 200 and isinstance(body, dict)
    assert body["default"] == "python3"
    spec = body["kernelspecs"]["python3"]
    assert spec["spec"]["language"] == "python" and spec["name"] == "python3"
    assert spec["spec"]["kernel_protocol_version"] == "5.5"  # as ipykernel 7 writes it, for clients to read
    logo = spec["resources"]["logo-64x64"]
    assert logo == "/kernelspecs/python3/logo-64x64.png"
    async with http.get(server.url + logo.lstrip("/"), headers=server.headers) as r:
        assert r.status == 200 and (await r.read()).startswith(b"\x89PNG")
    async with http.head(server.url + logo.lstrip("/"), headers=server.headers) as r:
        assert r.status == 200
    assert (await get(http, server, "api/kernelspecs/python3"))[0] == 200
    status, err = await get(http, server, "api/kernelspecs/nope")
    assert status == 404 and "nope" in err["message"]  # type: ignore[index]
    status, err = await get(http, server, "kernelspecs/python3/..%2Fkernel.json")
    assert status == 404


async def test_kernel_lifecycle(http: aiohttp.ClientSession, server: Server, root_dir: Path) -> None:
    async with http.post(
        server.url + "api/kernels", json={"name": "python3", "path": "sub/nb.ipynb"}, headers=server.headers
    ) as r:
        assert r.status == 201
        model = await r.json()
        assert r.headers["Location"] == f"/api/kernels/{model['id']}"
    assert set(model) >= {"id", "name", "last_activity", "execution_state", "connections"}
    assert TIMESTAMP.match(model["last_activity"]) and model["execution_state"] == "idle"
    kid = model["id"]
    status, listed = await get(http, server, "api/kernels")
    assert status == 200 and kid in [k["id"] for k in listed]  # type: ignore[union-attr,index]
    client = await KernelClient.connect(http, server, kid)
    _, outputs = await client.execute("import os; print(os.getcwd())")
    assert stdout_of(outputs).strip() == str(root_dir / "sub")
    async with http.post(f"{server.url}api/kernels/{kid}/interrupt", headers=server.headers) as r:
        assert r.status == 204
    async with http.post(f"{server.url}api/kernels/{kid}/restart", headers=server.headers) as r:
        assert r.status == 200 and (await r.json())["id"] == kid
    await client.close()
    async with http.delete(f"{server.url}api/kernels/{kid}", headers=server.headers) as r:
        assert r.status == 204
    assert (await get(http, server, f"api/kernels/{kid}"))[0] == 404


async def test_client_chosen_kernel_id(http: aiohttp.ClientSession, server: Server) -> None:
    kid = "0b6f1f2e-2f5e-4d27-9d4a-7d1f2a3b4c5d"
    assert await start_kernel(http, server, kernel_id=kid) == kid
    assert await start_kernel(http, server, kernel_id=kid) == kid  # the existing one again
    async with http.delete(f"{server.url}api/kernels/{kid}", headers=server.headers) as r:
        assert r.status == 204


async def test_bad_requests_get_clear_json_errors(http: aiohttp.ClientSession, server: Server) -> None:
    cases = [
        (b"{not json", 400),
        (b"[1]", 400),
        (b'{"name": "nope"}', 404),
        (b'{"name": 3}', 400),
        (b'{"env": "x"}', 400),
        (b'{"env": {"KERNEL_X": 1}}', 400),
        (b'{"env": {"bad name": "v"}}', 400),
        (b'{"path": "../.."}', 403),
        (b'{"path": "sub/../../x"}', 403),
        (b'{"kernel_id": "not-a-uuid"}', 400),
        (b'{"kernel_id": {}}', 400),
        (b'{"kernel_id": 7}', 400),
    ]
    for body, expected in cases:
        async with http.post(server.url + "api/kernels", data=body, headers=server.headers) as r:
            err = await r.json()
            assert r.status == expected, (body, err)
            assert set(err) == {"message", "reason"} and err["message"], body
            assert "Traceback" not in err["message"]
    for method, path in [
        ("GET", "api/kernels/nope"),
        ("DELETE", "api/kernels/nope"),
        ("POST", "api/kernels/nope/interrupt"),
        ("POST", "api/kernels/nope/restart"),
        ("GET", "api/sessions/nope"),
        ("GET", "api/nothing-here"),
    ]:
        async with http.request(method, server.url + path, headers=server.headers) as r:
            assert r.status == 404, path
            assert (await r.json())["message"]
    async with http.put(server.url + "api/kernels", headers=server.headers) as r:
        assert r.status == 405 and "message" in await r.json()


@pytest.mark.parametrize("route", ["api/kernels", "api/sessions"])
async def test_every_path_field_follows_the_one_confinement_rule(
    http: aiohttp.ClientSession, server: Server, route: str
) -> None:
    """NUL is a 400 naming the field (it was a 500), '..' a 403 even inside the root, a hidden
    name a 404: the same rules as the contents API."""
    cases = [
        ("a\u0000b", 400, "path may not contain NUL"),
        ("sub/../sub", 403, "'..'"),
        ("../x", 403, "'..'"),
        (".hidden/nb.ipynb", 404, "No such file"),
        (7, 400, "path must be a string"),
    ]
    for path, status, words in cases:
        body = {"path": path, "type": "notebook"} if route == "api/sessions" else {"path": path}
        async with http.post(server.url + route, json=body, headers=server.headers) as r:
            err = await r.json()
            assert (r.status, set(err)) == (status, {"message", "reason"}), (path, err)
            assert words in err["message"], (path, err)
    async with http.get(server.url + "api/contents/a%00b", headers=server.headers) as r:
        assert r.status == 400 and "NUL" in (await r.json())["message"]


async def test_oversized_body_is_413(http: aiohttp.ClientSession, root_dir: Path) -> None:
    async with serving(max_body_size=1000, root_dir=str(root_dir)) as srv:
        async with http.post(srv.url + "api/kernels", data=b"{" + b" " * 5000 + b"}", headers=srv.headers) as r:
            assert r.status == 413
            assert "max_body_size" in (await r.json())["message"]
        async with http.get(srv.url + "api", headers=srv.headers) as r:
            assert r.status == 200


async def test_sessions(http: aiohttp.ClientSession, server: Server) -> None:
    h = server.headers
    async with http.post(
        server.url + "api/sessions",
        json={"path": "a.ipynb", "type": "notebook", "name": "a", "kernel": {"name": "python3"}},
        headers=h,
    ) as r:
        assert r.status == 201
        s = await r.json()
    assert s["path"] == "a.ipynb" and s["kernel"]["name"] == "python3" and s["type"] == "notebook"
    # the same path gives the same session; the legacy form is accepted
    async with http.post(server.url + "api/sessions", json={"notebook": {"path": "a.ipynb"}}, headers=h) as r:
        assert r.status == 201 and (await r.json())["id"] == s["id"]
    async with http.get(server.url + "api/sessions", headers=h) as r:
        assert s["id"] in [x["id"] for x in await r.json()]
    # rename
    async with http.patch(f"{server.url}api/sessions/{s['id']}", json={"path": "b.ipynb", "name": "b"}, headers=h) as r:
        assert r.status == 200
        renamed = await r.json()
    assert renamed["path"] == "b.ipynb" and renamed["kernel"]["id"] == s["kernel"]["id"]
    # switch to a new kernel: the old one is shut down
    async with http.patch(f"{server.url}api/sessions/{s['id']}", json={"kernel": {"name": "python3"}}, headers=h) as r:
        switched = await r.json()
    assert switched["kernel"]["id"] != s["kernel"]["id"]
    async with http.get(f"{server.url}api/kernels/{s['kernel']['id']}", headers=h) as r:
        assert r.status == 404
    async with http.patch(f"{server.url}api/sessions/{s['id']}", data=b"nope", headers=h) as r:
        assert r.status == 400
    async with http.delete(f"{server.url}api/sessions/{s['id']}", headers=h) as r:
        assert r.status == 204
    async with http.get(f"{server.url}api/kernels/{switched['kernel']['id']}", headers=h) as r:
        assert r.status == 404
    async with http.post(server.url + "api/sessions", json={"kernel": {"name": "python3"}}, headers=h) as r:
        assert r.status == 400


async def test_listing_kernels_can_be_turned_off(http: aiohttp.ClientSession, root_dir: Path) -> None:
    async with serving(list_kernels=False, root_dir=str(root_dir)) as srv:
        async with http.get(srv.url + "api/kernels", headers=srv.headers) as r:
            assert r.status == 404 and "list_kernels" in (await r.json())["message"]


async def test_concurrent_creates_with_one_kernel_id_start_one_kernel(
    http: aiohttp.ClientSession, server: Server
) -> None:
    kid = "5a1e0c2d-8f3b-4c6e-9d7a-1b2c3d4e5f60"

    async def create() -> int:
        async with http.post(server.url + "api/kernels", json={"kernel_id": kid}, headers=server.headers) as r:
            return r.status

    statuses = sorted(await asyncio.gather(create(), create(), create()))
    assert statuses[0] == 201 and set(statuses) <= {201, 409}
    async with http.get(server.url + "api/kernels", headers=server.headers) as r:
        assert [k["id"] for k in await r.json()].count(kid) == 1
    async with http.delete(f"{server.url}api/kernels/{kid}", headers=server.headers) as r:
        assert r.status == 204


async def test_portico_s_own_requests_are_invisible(http: aiohttp.ClientSession, server: Server) -> None:
    """The start's kernel_info, the control probe and a restart's barrier are Portico's: a new
    kernel is idle from the first moment (not busy for a probe), and clients get no status for
    a request none of them sent."""
    kid = await start_kernel(http, server)
    client = await KernelClient.connect(http, server, kid)
    for _ in range(50):  # the probe runs in the background right after the start
        assert (await get(http, server, f"api/kernels/{kid}"))[1]["execution_state"] == "idle"  # type: ignore[index]
        await asyncio.sleep(0.02)
    async with http.post(f"{server.url}api/kernels/{kid}/restart", headers=server.headers) as r:
        assert r.status == 200
    reply, _ = await client.execute("1+1")
    statuses = [m for m in client.seen if m["header"]["msg_type"] == "status"]
    # What is left is the kernel's own lifecycle (the shutdown's busy and idle, the new process's
    # starting), which clients of Jupyter Server see too; nothing for a kernel_info nobody sent.
    foreign = [m for m in statuses if m["parent_header"].get("msg_type") == "kernel_info_request"]
    assert not foreign and statuses[-1]["parent_header"]["msg_id"] == reply["parent_header"]["msg_id"]
    await client.close()
