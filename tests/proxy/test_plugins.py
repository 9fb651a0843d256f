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

from portico_testing import Server, serving, start_server, write_notebook

PANEL_APP = "import panel as pn\n\npn.panel('Hello from a Panel app').servable()\n"


# Broken plugin packages, installed as pip installs them (a dist-info with entry_points.txt on the
# path): a release whose module is missing, and one that needs an environment only JupyterHub sets.
BROKEN = {
    "missing_module_proxy": ("gone = missing_module_proxy_pkg:setup", None),
    "hub_only_proxy": (
        "hubonly = hub_only_proxy:setup",
        "import os\n\ndef setup():\n    return {'command': ['true'], "
        "'environment': {'PREFIX': os.environ['JUPYTERHUB_SERVICE_PREFIX']}}\n",
    ),
    "reserved_name_proxy": ("api = reserved_name_proxy:setup", "def setup():\n    return {'command': ['true']}\n"),
}


def install_broken_plugins(site: Path) -> None:
    for package, (entry_point, module) in BROKEN.items():
        info = site / f"{package}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[jupyter_serverproxy_servers]\n{entry_point}\n")
        if module is not None:
            (site / f"{package}.py").write_text(module)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("plugins")
    (root / "examples").mkdir()
    (root / "examples" / "app.py").write_text(PANEL_APP)
    install_broken_plugins(root / "site")
    bin_dir = str(Path(sys.executable).parent)  # `panel` is on PATH, as in an activated environment
    env = {"PATH": bin_dir + os.pathsep + os.environ["PATH"], "PYTHONPATH": str(root / "site")}
    srv = start_server("--root-dir", str(root), "--proxy-entry-points", "true", env=env)
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
    async with http.ws_connect(
        server.ws_url + "panel/app/ws", headers=server.headers, protocols=("bokeh", token.group(1))
    ) as ws:
        assert ws.protocol == "bokeh"
        msg = await ws.receive(timeout=60)
        assert msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["msgtype"] == "ACK"


async def test_plugins_that_fail_to_load_are_reported_and_the_others_served(
    http: aiohttp.ClientSession, server: Server
) -> None:
    """As jupyter-server-proxy: a warning naming the entry point and the error, the plugin served
    nowhere, every other plugin served; and /api/status tells an operator which ones broke."""
    async with http.get(server.url + "api/status", headers=server.headers) as r:
        broken = {b["name"]: b for b in (await r.json())["broken_plugins"]}
    assert set(broken) == {"gone", "hubonly", "api"}
    assert broken["gone"]["entry_point"] == "missing_module_proxy_pkg:setup"
    assert broken["gone"]["error"].startswith("ModuleNotFoundError")
    assert broken["hubonly"]["error"] == "KeyError: 'JUPYTERHUB_SERVICE_PREFIX'"
    assert "one of Portico's own routes" in broken["api"]["error"]
    async with http.get(server.url + "server-proxy/servers-info", headers=server.headers) as r:
        names = {s["name"] for s in (await r.json())["server_processes"]}
    assert {"hello", "panel"} <= names and not names & set(broken)
    async with http.get(server.url + "hubonly/", headers=server.headers) as r:
        assert r.status == 404
    async with http.get(server.url + "hello/", headers=server.headers) as r:
        assert r.status == 200
    async with http.get(server.url + "api", headers=server.headers) as r:
        assert r.status == 200  # the reserved name took nothing of Portico's
    log = "".join(server.stderr)
    assert "proxy plugin 'hubonly' (entry point hub_only_proxy:setup) failed to load" in log
    assert "KeyError: 'JUPYTERHUB_SERVICE_PREFIX'" in log


async def test_a_notebook_asked_for_by_name_takes_a_segment_from_a_plugin_nobody_named(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Kernel Gateway's kernel_api notebook serves GET /hello at the root; hello-jupyter-proxy, installed
    here, claims /hello too.  The notebook the command line names is served, and the plugin is reported
    as not served, with why; the other plugins are served as before."""
    notebook = write_notebook(tmp_path / "kernel_api.ipynb", ["# GET /hello\nprint('hello world')"])
    async with serving(notebook=[notebook], proxy_entry_points=True) as srv:
        async with http.get(srv.url + "hello", headers=srv.headers) as r:
            assert (r.status, await r.text()) == (200, "hello world\n")
        async with http.get(srv.url + "api/status", headers=srv.headers) as r:
            broken = {b["name"]: b for b in (await r.json())["broken_plugins"]}
        assert f"/hello is taken by notebook {notebook}" in broken["hello"]["error"]
        async with http.get(srv.url + "server-proxy/servers-info", headers=srv.headers) as r:
            names = {s["name"] for s in (await r.json())["server_processes"]}
        assert "panel" in names and "hello" not in names
        assert any("proxy plugin" in line and "is not served" in line for line in srv.stderr)
    async with serving(notebook=[f"/hello={notebook}"], proxy_entry_points=True) as srv:  # the same under a prefix
        async with http.get(srv.url + "hello/hello", headers=srv.headers) as r:
            assert (r.status, await r.text()) == (200, "hello world\n")
