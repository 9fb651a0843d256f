"""The Jupyter Server REST API for kernelspecs, kernels and sessions, and the channels WebSocket."""

from __future__ import annotations

import socket
import uuid

from aiohttp import web

from ..errors import BadRequest, NotFound
from ..settings import Settings
from ..web.jsonio import json_body, json_response
from . import wire
from .manager import Kernels
from .requests import start_request
from .sessions import Sessions
from .specs import Specs


class KernelRoutes:
    def __init__(self, settings: Settings, specs: Specs, kernels: Kernels, sessions: Sessions) -> None:
        self.settings = settings
        self.specs = specs
        self.kernels = kernels
        self.sessions = sessions

    def add_to(self, router: web.UrlDispatcher) -> None:
        routes = [
            ("GET", "api/kernelspecs", self.list_specs),
            ("GET", "api/kernelspecs/{name}", self.get_spec),
            ("GET", "kernelspecs/{name}/{file}", self.spec_resource),
            ("HEAD", "kernelspecs/{name}/{file}", self.spec_resource),
            ("GET", "api/kernels", self.list_kernels),
            ("POST", "api/kernels", self.start_kernel),
            ("GET", "api/kernels/{id}", self.get_kernel),
            ("DELETE", "api/kernels/{id}", self.delete_kernel),
            ("POST", "api/kernels/{id}/interrupt", self.interrupt_kernel),
            ("POST", "api/kernels/{id}/restart", self.restart_kernel),
            ("GET", "api/kernels/{id}/channels", self.channels),
            ("GET", "api/sessions", self.list_sessions),
            ("POST", "api/sessions", self.create_session),
            ("GET", "api/sessions/{id}", self.get_session),
            ("PATCH", "api/sessions/{id}", self.update_session),
            ("DELETE", "api/sessions/{id}", self.delete_session),
        ]
        for method, path, handler in routes:
            router.add_route(method, self.settings.base_url + path, handler)

    # kernelspecs -------------------------------------------------------------------------
    async def list_specs(self, request: web.Request) -> web.Response:
        return json_response(self.specs.all())

    async def get_spec(self, request: web.Request) -> web.Response:
        return json_response(self.specs.one(request.match_info["name"]))

    async def spec_resource(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(self.specs.resource(request.match_info["name"], request.match_info["file"]))

    # kernels -----------------------------------------------------------------------------
    async def list_kernels(self, request: web.Request) -> web.Response:
        if not self.settings.list_kernels:
            raise NotFound("Listing kernels is turned off (option list_kernels).")
        return json_response([k.model() for k in self.kernels.kernels.values()])

    async def start_kernel(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        kernel = await self.kernels.start(
            start_request(self.settings, body.get("name"), body.get("path"), body.get("env"), body.get("kernel_id"))
        )
        location = f"{self.settings.base_url}api/kernels/{kernel.id}"
        return json_response(kernel.model(), status=201, headers={"Location": location})

    async def get_kernel(self, request: web.Request) -> web.Response:
        return json_response(self.kernels.get(request.match_info["id"]).model())

    async def delete_kernel(self, request: web.Request) -> web.Response:
        await self.kernels.shutdown(request.match_info["id"])
        return web.Response(status=204)

    async def interrupt_kernel(self, request: web.Request) -> web.Response:
        await self.kernels.interrupt(request.match_info["id"])
        return web.Response(status=204)

    async def restart_kernel(self, request: web.Request) -> web.Response:
        kernel = await self.kernels.restart(request.match_info["id"])
        return json_response(kernel.model())

    async def channels(self, request: web.Request) -> web.WebSocketResponse:
        kernel = self.kernels.get(request.match_info["id"])
        if kernel.relay is None or kernel.execution_state == "dead":
            raise NotFound(f"Kernel {kernel.id} is dead: {kernel.reason}.", "Kernel Dead")
        asked = self._since(request)
        since = kernel.relay.journal.next_seq - 1 if isinstance(asked, str) else asked  # "now"
        s = self.settings
        ws = web.WebSocketResponse(
            protocols=[wire.V1_PROTOCOL],
            heartbeat=s.ws_ping_interval or None,
            max_msg_size=s.ws_max_message_size,
            compress=False,
        )
        await ws.prepare(request)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session_id = request.query.get("session_id") or uuid.uuid4().hex
        transport = request.transport
        await kernel.relay.serve(ws, session_id, since, transport.abort if transport else lambda: None)
        return ws

    @staticmethod
    def _since(request: web.Request) -> int | str | None:
        """?since=N, or ?since=now: nothing replayed, and every message from here on numbered."""
        raw = request.query.get("since")
        if raw is None or raw == "now":
            return raw
        if not (raw.isascii() and raw.isdigit()):
            raise BadRequest("since must be a journal sequence number (a whole number, 0 for everything kept) or now.")
        return int(raw)

    # sessions ----------------------------------------------------------------------------
    async def list_sessions(self, request: web.Request) -> web.Response:
        return json_response(self.sessions.list())

    async def create_session(self, request: web.Request) -> web.Response:
        session, _ = await self.sessions.create(await json_body(request))
        location = f"{self.settings.base_url}api/sessions/{session.id}"
        return json_response(self.sessions.model(session), status=201, headers={"Location": location})

    async def get_session(self, request: web.Request) -> web.Response:
        return json_response(self.sessions.model(self.sessions.get(request.match_info["id"])))

    async def update_session(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        if "id" in body and body["id"] != request.match_info["id"]:
            raise BadRequest("The body's id does not match the session in the URL.")
        session = await self.sessions.update(request.match_info["id"], body)
        return json_response(self.sessions.model(session))

    async def delete_session(self, request: web.Request) -> web.Response:
        await self.sessions.delete(request.match_info["id"])
        return web.Response(status=204)
