"""The process proxy end to end: real child processes on 127.0.0.1 and Unix sockets."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import Server, readme_example, run_session, start_server

BACKEND = str(Path(__file__).with_name("backend.py"))
ICON = Path(__file__).with_name("icon.svg")

CONFIG = f"""
import sys
BACKEND = {BACKEND!r}

def rewrite(response, path):
    if path.startswith("/echo"):
        response.headers["X-Rewritten"] = "yes"
        response.body = response.body.replace(b'"method"', b'"METHOD"')

unix_path = {str(Path("/tmp") / f"portico-test-{os.getpid()}.sock")!r}
c.ServerProxy.non_service_rewrite_response = lambda response: response.headers.__setitem__("X-Port-Rewrite", "1")
c.ServerProxy.servers = {{
    "app": {{"command": [sys.executable, BACKEND, "--port", "{{port}}"], "timeout": 20,
             "launcher_entry": {{"title": "The app", "icon_path": {str(ICON)!r}}}, "new_browser_tab": False}},
    "unixapp": {{"command": [sys.executable, BACKEND, "--unix-socket", "{{unix_socket}}"], "unix_socket": True,
                 "timeout": 20}},
    "absolute": {{"command": lambda port: [sys.executable, BACKEND, "--port", str(port)], "absolute_url": True,
                  "timeout": 20}},
    "mapped": {{"command": [sys.executable, BACKEND, "--port", "{{port}}"], "mappath": {{"/": "/echo/mapped"}},
                "update_last_activity": False,
                "request_headers_override": {{"X-Override": "set"}}, "timeout": 20,
                "environment": lambda port: {{"PORT_SEEN": str(port)}}}},
    "rewritten": {{"command": [sys.executable, BACKEND, "--port", "{{port}}"], "rewrite_response": rewrite,
                   "timeout": 20}},
    "fixed": {{"command": [sys.executable, BACKEND, "--unix-socket", unix_path], "unix_socket": unix_path,
               "environment": {{"FROM_CONFIG": "yes {{port}}"}}, "timeout": 20,
               "exclude_last_activity_patterns": ["/env$"], "mappath": lambda path: "/echo" if path == "/m" else path}},
    "lazy": {{"command": [sys.executable, BACKEND, "--port", "{{port}}"], "timeout": 20}},
    "static": {{"command": [sys.executable, "-m", "http.server", "{{port}}", "--bind", "127.0.0.1"], "timeout": 20}},
    "raw": {{"command": [sys.executable, BACKEND, "--raw", "--port", "{{port}}"], "raw_socket_proxy": True,
             "timeout": 20}},
    "crash": {{"command": [sys.executable, BACKEND, "--exit-at-once", "3"], "timeout": 20}},
    "missing": {{"command": ["/no/such/program", "{{port}}"]}},
    "deaf": {{"command": [sys.executable, "-c", "import time; time.sleep(600)"], "timeout": 1}},
}}
"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("proxy")
    (root / "hello.txt").write_text("hello from http.server\n")
    config = root / "proxy_config.py"
    config.write_text(CONFIG)
    srv = start_server(
        "--proxy-config",
        str(config),
        "--root-dir",
        str(root),
        "--proxy-entry-points",
        "false",
        "--proxy-restart-min-uptime",
        "2",
        "--proxy-restart-max-backoff",
        "2",
        "--proxy-response-timeout",
        "2",
        env={"AWS_SECRET_ACCESS_KEY": "do-not-pass", "PORTICO_TOKEN": "test-token"},
    )
    yield srv
    srv.stop()


async def call(
    http: aiohttp.ClientSession, server: Server, method: str, path: str, **kw: object
) -> tuple[int, dict[str, object] | str]:
    headers = {**server.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
    async with http.request(method, server.url + path, headers=headers, allow_redirects=False, **kw) as r:  # type: ignore[arg-type]
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def test_http_through_tcp_and_unix_sockets(http: aiohttp.ClientSession, proxy: Server) -> None:
    for name in ("app", "unixapp"):
        status, body = await call(http, proxy, "PUT", f"{name}/echo/a%2Fb?x=1&x=2", data=b"12345")
        assert status == 200 and isinstance(body, dict), (name, body)
        assert (body["method"], body["path"], body["query"], body["size"]) == ("PUT", "/echo/a%2Fb", "x=1&x=2", 5)
        headers = body["headers"]
        assert isinstance(headers, dict)
        assert headers["X-Forwarded-Context"] == headers["X-ProxyContextPath"] == f"/{name}"
        assert headers["X-Forwarded-For"] == "127.0.0.1" and headers["X-Forwarded-Proto"] == "http"
    status, text = await call(http, proxy, "GET", "static/hello.txt")
    assert (status, text) == (200, "hello from http.server\n")
    async with http.get(proxy.url + "app", headers=proxy.headers, allow_redirects=False, params={"q": "1"}) as r:
        assert r.status == 302 and r.headers["Location"] == "/app/?q=1"


async def test_the_backend_never_sees_portico_credentials(http: aiohttp.ClientSession, proxy: Server) -> None:
    status, body = await call(
        http,
        proxy,
        "GET",
        f"app/echo?token={proxy.token}&keep=1",
        headers={"Cookie": "portico-session=s; app=kept", "X-Other": "y"},
    )
    assert status == 200 and isinstance(body, dict)
    headers = body["headers"]
    assert isinstance(headers, dict)
    assert "Authorization" not in headers and proxy.token not in json.dumps(body)
    assert headers["Cookie"] == "app=kept" and headers["X-Other"] == "y" and body["query"] == "keep=1"


async def test_a_browser_login_reaches_apps_whose_forms_send_no_xsrf_header(proxy: Server) -> None:
    """The login cookie authenticates proxied requests; the app's own POSTs need no X-XSRFToken (as in
    jupyter-server-proxy), while Portico's own API still does; the backend never sees the cookie."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(proxy.url + f"?token={proxy.token}") as r:
            assert r.status == 200
        async with browser.post(proxy.url + "app/echo", data=b"form=1") as r:
            body = await r.json()
            assert r.status == 200 and body["method"] == "POST" and body["size"] == 6
            assert "portico-login" not in body["headers"].get("Cookie", "")
        async with browser.post(proxy.url + "api/kernels", json={}) as r:
            assert r.status == 403


async def test_options_absolute_mappath_overrides_environment_rewrite(
    http: aiohttp.ClientSession, proxy: Server
) -> None:
    status, body = await call(http, proxy, "GET", "absolute/echo")
    assert status == 200 and isinstance(body, dict) and body["path"] == "/absolute/echo"
    status, body = await call(http, proxy, "GET", "mapped/")
    assert status == 200 and isinstance(body, dict) and body["path"] == "/echo/mapped"
    assert body["headers"]["X-Override"] == "set"  # type: ignore[index]
    async with http.get(proxy.url + "rewritten/echo", headers=proxy.headers) as r:
        assert r.headers["X-Rewritten"] == "yes" and (await r.json())["METHOD"] == "GET"


async def test_environment_working_directory_and_activity(http: aiohttp.ClientSession, proxy: Server) -> None:
    status, body = await call(http, proxy, "GET", "fixed/env")
    assert status == 200 and isinstance(body, dict)
    env = body["env"]
    assert isinstance(env, dict)
    assert env["FROM_CONFIG"] == "yes 0"  # templated (a Unix-socket server has no port)
    assert "AWS_SECRET_ACCESS_KEY" not in env and not any(k.startswith("PORTICO_") for k in env)
    assert proxy.token not in json.dumps(env)
    assert str(body["cwd"]).endswith("proxy0")  # root_dir
    _, info = await call(http, proxy, "GET", "api/proxy/servers/fixed")
    assert isinstance(info, dict) and str(info["backend"]).endswith(".sock")
    activity = info["last_activity"]
    await call(http, proxy, "GET", "fixed/env")  # excluded by a pattern
    assert (await call(http, proxy, "GET", "api/proxy/servers/fixed"))[1]["last_activity"] == activity  # type: ignore[index]
    status, body = await call(http, proxy, "GET", "fixed/m")  # a mappath callable
    assert status == 200 and isinstance(body, dict) and body["path"] == "/echo"
    assert (await call(http, proxy, "GET", "api/proxy/servers/fixed"))[1]["last_activity"] > activity  # type: ignore[index]
    _, before = await call(http, proxy, "GET", "api/proxy/servers/mapped")
    await call(http, proxy, "GET", "mapped/")
    _, after = await call(http, proxy, "GET", "api/proxy/servers/mapped")
    assert isinstance(before, dict) and isinstance(after, dict) and before["last_activity"] == after["last_activity"]


async def test_streams_pass_as_they_come(http: aiohttp.ClientSession, proxy: Server) -> None:
    async with http.get(proxy.url + "app/sse?gap=1", headers=proxy.headers) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        started = time.monotonic()
        first = await r.content.readuntil(b"\n\n")
        assert first == b"data: event 0\n\n" and time.monotonic() - started < 0.9  # before the stream ends
        assert (await r.read()).count(b"data: event") == 2
    async with http.get(proxy.url + "app/gzip", headers=proxy.headers, auto_decompress=False) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await r.read()) == b"squeezed " * 100


async def test_statuses_without_bodies_and_head(http: aiohttp.ClientSession, proxy: Server) -> None:
    for code in (204, 304, 404, 500):
        async with http.get(proxy.url + f"app/status/{code}", headers=proxy.headers) as r:
            assert r.status == code and (await r.read()) == (b"" if code in (204, 304) else str(code).encode())
    async with http.head(proxy.url + "app/big?mib=2", headers=proxy.headers) as r:
        assert r.status == 200 and r.headers["Content-Length"] == str(2 << 20) and await r.read() == b""
    async with http.get(proxy.url + "app/echo", headers=proxy.headers) as r:  # the connection is still good
        assert r.status == 200


async def test_redirects_stay_under_the_prefix(http: aiohttp.ClientSession, proxy: Server) -> None:
    for kind, expected in (
        ("root", "/app/echo?from=root"),
        ("absolute", "/app/echo?from=absolute"),
        ("elsewhere", "https://example.org/"),
    ):
        async with http.get(proxy.url + f"app/redirect?to={kind}", headers=proxy.headers, allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (302, expected), kind


async def test_websockets(http: aiohttp.ClientSession, proxy: Server) -> None:
    for name in ("app", "unixapp"):
        async with http.ws_connect(
            proxy.ws_url + f"{name}/ws", headers=proxy.headers, protocols=("chat.v1", "chat.v0")
        ) as ws:
            assert ws.protocol == "chat.v1"  # what the backend chose
            await ws.send_str("hello")
            assert (await ws.receive()).data == "hello"
            await ws.send_bytes(b"\x00\xff" * 50_000)
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == b"\x00\xff" * 50_000
            await ws.send_str("close:4001:done here")
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.CLOSE and (msg.data, msg.extra) == (4001, "done here")


async def test_raw_socket_proxy(http: aiohttp.ClientSession, proxy: Server) -> None:
    async with http.ws_connect(proxy.ws_url + "raw/", headers=proxy.headers) as ws:
        await ws.send_bytes(b"raw bytes")
        received = b""
        while len(received) < 9:
            received += (await ws.receive()).data
        assert received == b"raw bytes"


async def test_arbitrary_ports_and_the_allow_list(http: aiohttp.ClientSession, proxy: Server) -> None:
    _, info = await call(http, proxy, "GET", "api/proxy/servers/app")
    assert isinstance(info, dict)
    port = int(str(info["backend"]).rsplit(":", 1)[1])
    async with http.get(proxy.url + f"proxy/{port}/echo", headers=proxy.headers) as r:
        assert r.headers["X-Port-Rewrite"] == "1"  # non_service_rewrite_response
    status, body = await call(http, proxy, "GET", f"proxy/{port}/echo?z=1")
    assert status == 200 and isinstance(body, dict) and (body["path"], body["query"]) == ("/echo", "z=1")
    status, body = await call(http, proxy, "GET", f"proxy/absolute/{port}/echo")
    assert status == 200 and isinstance(body, dict) and body["path"] == f"/proxy/absolute/{port}/echo"
    status, body = await call(http, proxy, "GET", f"proxy/localhost:{port}/echo")
    assert status == 200
    status, body = await call(http, proxy, "GET", f"proxy/<script>:{port}/")
    assert status in (403, 404) and "<script>" not in json.dumps(body)
    status, body = await call(http, proxy, "GET", f"proxy/10.1.2.3:{port}/")
    assert status == 403 and isinstance(body, dict) and "10.1.2.3" in str(body["message"])
    async with http.ws_connect(proxy.ws_url + f"proxy/{port}/ws", headers=proxy.headers) as ws:
        await ws.send_str("via port")
        assert (await ws.receive()).data == "via port"


async def test_errors_are_clear(http: aiohttp.ClientSession, proxy: Server) -> None:
    status, body = await call(http, proxy, "GET", "proxy/1/")
    assert status == 502 and isinstance(body, dict) and "refused the connection" in str(body["message"])
    status, body = await call(http, proxy, "GET", "nosuchserver/")
    assert status == 404
    _, raw = await call(http, proxy, "POST", "api/proxy/servers/raw/start")  # a TCP echo: not HTTP at all
    assert isinstance(raw, dict)
    status, body = await call(http, proxy, "GET", f"proxy/{str(raw['backend']).rsplit(':', 1)[1]}/" + "x" * 5000)
    assert status == 502 and isinstance(body, dict) and body["reason"] == "Backend Failed"
    assert len(str(body["message"])) < 600  # what it sent back is not repeated whole
    status, body = await call(http, proxy, "GET", "missing/")
    assert status == 502 and isinstance(body, dict) and "could not be started" in str(body["message"])
    started = time.monotonic()
    status, body = await call(http, proxy, "GET", "deaf/")
    assert status == 504 and isinstance(body, dict) and "within its timeout of 1 s" in str(body["message"])
    assert time.monotonic() - started < 5
    status, body = await call(http, proxy, "GET", "app/slow?s=0.1")
    assert (status, body) == (200, "late")
    status, body = await call(http, proxy, "GET", "app/slow?s=10")  # proxy_response_timeout is 2 here
    assert status == 504 and isinstance(body, dict) and "proxy_response_timeout" in str(body["message"])


async def test_concurrent_first_requests_share_one_start(http: aiohttp.ClientSession, proxy: Server) -> None:
    results = await asyncio.gather(*(call(http, proxy, "GET", "lazy/echo") for _ in range(8)))
    assert {status for status, _ in results} == {200}
    assert len({body["pid"] for _, body in results if isinstance(body, dict)}) == 1
    _, info = await call(http, proxy, "GET", "api/proxy/servers/lazy")
    assert isinstance(info, dict) and info["restarts"] == 0


async def test_a_crashing_process_backs_off(http: aiohttp.ClientSession, proxy: Server) -> None:
    statuses = []
    started = time.monotonic()
    while time.monotonic() - started < 6:
        status, body = await call(http, proxy, "GET", "crash/")
        statuses.append((status, body["reason"] if isinstance(body, dict) else body))
        await asyncio.sleep(0.1)
    _, info = await call(http, proxy, "GET", "api/proxy/servers/crash")
    assert isinstance(info, dict)
    starts = int(info["restarts"]) + 1  # type: ignore[call-overload]
    assert 2 <= starts <= 8, statuses  # a handful, not one per request
    assert {reason for _, reason in statuses} <= {"Server Exited", "Server Crashing"}
    assert {status for status, _ in statuses} == {502}
    _, logs = await call(http, proxy, "GET", "api/proxy/servers/crash/logs")
    assert isinstance(logs, dict) and "failing on purpose" in logs["stderr"]


async def test_an_exit_with_code_0_starts_again_on_the_next_request(http: aiohttp.ClientSession, proxy: Server) -> None:
    _, first = await call(http, proxy, "GET", "unixapp/echo")
    await call(http, proxy, "GET", "unixapp/exit?code=0")

    async def exited() -> bool:
        _, info = await call(http, proxy, "GET", "api/proxy/servers/unixapp")
        return isinstance(info, dict) and info["state"] in ("exited", "backoff")

    async with asyncio.timeout(10):
        while not await exited():
            await asyncio.sleep(0.05)
    await asyncio.sleep(2)  # past the minimum uptime of this test server's options
    status, again = await call(http, proxy, "GET", "unixapp/echo")
    assert status == 200 and isinstance(first, dict) and isinstance(again, dict) and again["pid"] != first["pid"]


async def test_the_api_lists_stops_starts_and_restarts(http: aiohttp.ClientSession, proxy: Server) -> None:
    await call(http, proxy, "GET", "static/")
    status, servers = await call(http, proxy, "GET", "api/proxy/servers")
    assert status == 200 and isinstance(servers, list)
    assert {s["name"] for s in servers} >= {"app", "unixapp", "static", "raw", "crash"}
    _, files = await call(http, proxy, "GET", "api/proxy/servers/static")
    assert isinstance(files, dict) and files["state"] == "running" and files["pid"]
    _, stopped = await call(http, proxy, "POST", "api/proxy/servers/static/stop")
    assert isinstance(stopped, dict) and (stopped["state"], stopped["pid"]) == ("stopped", None)
    _, started = await call(http, proxy, "POST", "api/proxy/servers/static/start")
    assert isinstance(started, dict) and started["state"] == "running"
    _, restarted = await call(http, proxy, "POST", "api/proxy/servers/static/restart")
    assert isinstance(restarted, dict) and restarted["state"] == "running" and restarted["pid"] != started["pid"]
    assert (await call(http, proxy, "POST", "api/proxy/servers/nope/start"))[0] == 404


async def test_launcher_info_and_icons(http: aiohttp.ClientSession, proxy: Server) -> None:
    _, info = await call(http, proxy, "GET", "server-proxy/servers-info")
    assert isinstance(info, dict)
    app = next(s for s in info["server_processes"] if s["name"] == "app")  # type: ignore[union-attr]
    assert app["launcher_entry"]["title"] == "The app" and app["new_browser_tab"] is False
    assert app["launcher_entry"]["icon_url"] == "/server-proxy/icon/app"
    async with http.get(proxy.url + "server-proxy/icon/app") as r:  # no token needed
        assert r.status == 200 and r.content_type == "image/svg+xml"
    async with http.get(proxy.url + "server-proxy/servers-info") as r:
        assert r.status == 401
    async with http.get(proxy.url + "app/echo") as r:
        assert r.status == 401


def test_no_child_and_no_socket_directory_outlives_the_server(tmp_path: Path) -> None:
    config = tmp_path / "proxy_config.py"
    config.write_text(
        CONFIG.replace('"timeout": 20}', '"timeout": 20, "autostart": True}', 2).replace(
            '"lazy": {{"command": [sys.executable, BACKEND, "--port", "{{port}}"]'.replace("{{", "{").replace(
                "}}", "}"
            ),
            '"lazy": {"autostart": True, "command": ["sh", "-c", '
            'f"sleep 612345 & exec {sys.executable} {BACKEND} --port {{port}}"]',
        )
    )
    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("portico-unixapp-*"))
    server = start_server("--proxy-config", str(config), "--proxy-entry-points", "false")
    import urllib.request

    request = urllib.request.Request(server.url + "api/proxy/servers", headers=server.headers)
    with urllib.request.urlopen(request, timeout=30) as r:
        pids = [s["pid"] for s in json.loads(r.read()) if s["pid"]]
    assert len(pids) >= 3
    assert [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).startswith("sleep 612345")]
    assert server.stop() == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("portico-unixapp-*")) <= before
    assert not [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).startswith("sleep 612345")]  # a grandchild


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_readme_proxy_example_runs() -> None:
    import shlex

    args, session = readme_example("## The process proxy")
    server = start_server(*shlex.split(args), "--root-dir", str(Path(__file__).resolve().parents[2]))
    try:
        run_session(server, session)
    finally:
        server.stop()


async def test_a_restarted_backend_is_reached_through_a_fresh_connection(
    http: aiohttp.ClientSession, proxy: Server
) -> None:
    for _ in range(3):  # kept-alive connections to the backend, reused
        assert (await call(http, proxy, "GET", "app/echo"))[0] == 200
    _, before = await call(http, proxy, "GET", "app/echo")
    await call(http, proxy, "POST", "api/proxy/servers/app/restart")  # the pooled connections are now dead
    status, after = await call(http, proxy, "GET", "app/echo")
    assert status == 200 and isinstance(before, dict) and isinstance(after, dict) and before["pid"] != after["pid"]
    status, body = await call(http, proxy, "DELETE", "app/echo")
    assert status == 200 and isinstance(body, dict) and body["method"] == "DELETE"
