"""The MCP endpoint, through the official mcp client, with real kernels."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from portico_testing import LocalServer, write_notebook

PLOT = (
    "from IPython.display import Image, display\nimport base64\n"
    "display(Image(data=base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')))"
)


@asynccontextmanager
async def mcp_session(srv: LocalServer, token: str | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token or srv.token}"}
    async with httpx2.AsyncClient(headers=headers) as http:
        async with streamable_http_client(srv.url + "mcp", http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def test_the_tools_are_listed_and_run_code_gives_text_images_and_errors(server: LocalServer) -> None:
    async with mcp_session(server) as mcp:
        names = {tool.name for tool in (await mcp.list_tools()).tools}
        assert {"list_kernelspecs", "list_kernels", "start_kernel", "interrupt_kernel", "restart_kernel"} <= names
        assert {"stop_kernel", "run_code", "list_notebooks", "read_notebook", "run_cell"} <= names
        text = await mcp.call_tool("run_code", {"code": "print(6*7)"})
        assert not text.is_error and [c.type for c in text.content] == ["text"] and text.content[0].text == "42\n"
        image = await mcp.call_tool("run_code", {"code": PLOT})
        assert not image.is_error and image.content[0].type == "image" and image.content[0].mime_type == "image/png"
        assert base64.b64decode(image.content[0].data).startswith(b"\x89PNG")
        error = await mcp.call_tool("run_code", {"code": "def f():\n    raise KeyError('gone')\nf()"})
        assert error.is_error and "KeyError: 'gone'" in error.content[-1].text and "\x1b[" not in error.content[-1].text
        assert "f()" in error.content[-1].text  # the traceback, not only the message


async def test_a_kernel_started_through_mcp_keeps_its_state_and_is_stopped(
    http: aiohttp.ClientSession, server: LocalServer
) -> None:
    async with mcp_session(server) as mcp:
        started = json.loads((await mcp.call_tool("start_kernel", {})).content[0].text)
        kernel = started["id"]
        await mcp.call_tool("run_code", {"code": "x = 20", "kernel_id": kernel})
        result = await mcp.call_tool("run_code", {"code": "x * 2 + 2", "kernel_id": kernel})
        assert result.content[0].text == "42"
        listed = await mcp.call_tool("list_kernels", {})
        assert kernel in listed.content[0].text
        assert not (await mcp.call_tool("interrupt_kernel", {"kernel_id": kernel})).is_error
        assert not (await mcp.call_tool("restart_kernel", {"kernel_id": kernel})).is_error
        gone = await mcp.call_tool("run_code", {"code": "x", "kernel_id": kernel})
        assert gone.is_error and "NameError" in gone.content[-1].text
        assert not (await mcp.call_tool("stop_kernel", {"kernel_id": kernel})).is_error
        missing = await mcp.call_tool("run_code", {"code": "1", "kernel_id": kernel})
        assert missing.is_error and "No such kernel" in missing.content[0].text
    async with http.get(server.url + "api/kernels", headers=server.headers) as r:
        assert await r.json() == []


async def test_notebook_cells_are_listed_read_run_and_saved(server: LocalServer, root_dir: Path) -> None:
    (root_dir / "mcp").mkdir(exist_ok=True)
    write_notebook(root_dir / "mcp" / "nb.ipynb", [("markdown", "# title"), "y = 6", "print(y * 7)"])
    async with mcp_session(server) as mcp:
        listed = await mcp.call_tool("list_notebooks", {"path": "mcp"})
        assert [c.text for c in listed.content] == ["mcp/nb.ipynb"]
        cells = [json.loads(c.text) for c in (await mcp.call_tool("read_notebook", {"path": "mcp/nb.ipynb"})).content]
        code = [(c["index"], c["cell_type"], c["source"]) for c in cells][1:]
        assert code == [(1, "code", "y = 6"), (2, "code", "print(y * 7)")]
        await mcp.call_tool("run_cell", {"path": "mcp/nb.ipynb", "index": 1})
        ran = await mcp.call_tool("run_cell", {"path": "mcp/nb.ipynb", "index": 2})
        assert ran.content[0].text == "42\n"
        not_code = await mcp.call_tool("run_cell", {"path": "mcp/nb.ipynb", "index": 0})
        assert not_code.is_error and "not a code cell" in not_code.content[0].text
        outside = await mcp.call_tool("read_notebook", {"path": "../../etc/passwd.ipynb"})
        assert outside.is_error
    saved = json.loads((root_dir / "mcp" / "nb.ipynb").read_text())
    assert saved["cells"][2]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}]
    assert saved["cells"][2]["execution_count"] == 2


async def test_mcp_needs_the_token(http: aiohttp.ClientSession, server: LocalServer) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with http.post(server.url + "mcp", json=body) as r:
        assert r.status == 401
    async with http.post(server.url + "mcp", json=body, headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status == 401
    async with http.get(server.url + "mcp", headers=server.headers) as r:
        assert r.status == 405
