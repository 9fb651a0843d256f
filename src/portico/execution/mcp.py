"""The MCP endpoint (Model Context Protocol, streamable HTTP) at /mcp, behind Portico's token.

Built on the official SDK's MCPServer (its tools: tools.py), whose session manager is served
through a small ASGI bridge from aiohttp (the SDK speaks ASGI, Portico aiohttp).  The SDK is
imported, and the server built and started, at the first request: the import takes two
seconds, which every start of Portico would otherwise pay.  Stateless: every POST is a whole
exchange, so nothing is kept between requests and any number of agents can call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..kernels.manager import Kernels
from ..settings import Settings
from .execution import Executions

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

log = logging.getLogger("portico")


class Mcp:
    """The MCP server, started on first use, and the aiohttp handler that serves it."""

    name = "mcp"

    def __init__(self, settings: Settings, kernels: Kernels, executions: Executions) -> None:
        self.settings = settings
        self.kernels = kernels
        self.executions = executions
        self._server: MCPServer | None = None
        self._starting = asyncio.Lock()
        self._serving: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # lifecycle (portico.lifecycle.Component) -------------------------------------------------
    async def start_up(self) -> None:
        pass

    async def server(self) -> MCPServer:
        """The MCP server, built and started on first use."""
        async with self._starting:
            if self._server is None:
                server = self._build()
                started = asyncio.get_running_loop().create_future()
                self._serving = asyncio.create_task(self._serve(server, started))
                await started
                self._server = server
        return self._server

    def _build(self) -> MCPServer:
        from .tools import build

        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        server = build(self.settings, self.kernels, self.executions)
        root.handlers[:], root.level = handlers, level  # the SDK configures the root logger; Portico logs its own way
        server.streamable_http_app(streamable_http_path="/", stateless_http=True, json_response=True)
        return server

    async def _serve(self, server: MCPServer, started: asyncio.Future[None]) -> None:
        """The session manager's run() is a task group: entered and left in this one task."""
        try:
            async with server.session_manager.run():
                started.set_result(None)
                await self._stop.wait()
        except BaseException as e:
            if not started.done():
                started.set_exception(e)
            raise

    def stop_accepting(self) -> None:
        pass

    async def disconnect(self, reason: str) -> None:
        pass

    async def end(self) -> None:
        self._stop.set()
        if self._serving is not None:
            await self._serving

    def add_to(self, router: web.UrlDispatcher) -> None:
        # POST only: stateless, it has no stream to GET and no session to DELETE (both 405, as the
        # transport's specification allows)
        router.add_route("POST", self.settings.base_url + "mcp", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        server = await self.server()
        return await asgi(server.session_manager.handle_request, request, "/")


async def asgi(app: Any, request: web.Request, path: str) -> web.StreamResponse:
    """One aiohttp request through an ASGI app: its body in, its response streamed out."""
    body = await request.read()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": request.query_string.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
        "client": request.transport.get_extra_info("peername") if request.transport else None,
        "server": None,
    }
    received = False
    disconnected = asyncio.Event()
    response: web.StreamResponse | None = None

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal response
        if message["type"] == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for key, value in message.get("headers", []):
                response.headers.add(key.decode("latin-1"), value.decode("latin-1"))
            await response.prepare(request)
        elif message["type"] == "http.response.body" and response is not None:
            if message.get("body"):
                await response.write(message["body"])
            if not message.get("more_body"):
                await response.write_eof()

    try:
        await app(scope, receive, send)
    finally:
        disconnected.set()
    if response is None:
        raise web.HTTPInternalServerError(text="the MCP server sent no response")
    return response
