"""The proxy's routes: named servers, arbitrary ports, the launcher's JSON and icons, and the
REST API that lists, starts, stops and restarts the processes.

    /NAME                         -> redirect to /NAME/ (query kept)
    /NAME/...                     a named server (started on first request)
    /proxy/PORT/...               127.0.0.1:PORT, the prefix removed
    /proxy/absolute/PORT/...      127.0.0.1:PORT, the whole path kept
    /proxy/HOST:PORT/...          HOST:PORT if HOST is on the allow list, else 403
    /server-proxy/servers-info    jupyter-server-proxy's launcher JSON, plus each process's state
    /server-proxy/icon/NAME       a launcher icon (no token needed)
    /api/proxy/servers[/NAME[/start|stop|restart|logs]]
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import logging
import mimetypes
import re
import time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from ..errors import Forbidden, NotFound, SettingsError
from ..settings import Settings
from ..urls import PROXIED, Owners
from ..web.jsonio import json_response
from . import config, websocket
from .config import BrokenPlugin, ProxyConfig, ServerSpec, call_with
from .http import Forwarder, Target
from .supervisor import Backend, Process

log = logging.getLogger("portico")


class ProxyRoutes:
    def __init__(self, settings: Settings, owners: Owners) -> None:
        self.settings = settings
        self.config: ProxyConfig = config.load(settings)
        self.processes: dict[str, Process] = {}
        self.icons: dict[str, Path] = {}
        for name, spec in list(self.config.servers.items()):
            plugin = spec.source.startswith("entry point")
            if owners.owner(name) is None:
                # a plugin nobody named gives way to a notebook's routes the user asked for
                owners.claim(name, PROXIED, f"server {name!r}", partial(self._give_way, name) if plugin else None)
            else:
                problem = f"server {name!r}: the name is one of Portico's own routes"
                if not plugin:
                    raise SettingsError(problem + "; choose another")
                self._drop(name, problem)
        self.processes = {name: Process(spec, settings) for name, spec in self.config.servers.items()}
        self.forwarder = Forwarder(settings.token, settings.proxy_connect_timeout, settings.proxy_response_timeout)
        self.icons = {
            name: Path(spec.launcher.icon_path) for name, spec in self.config.servers.items() if spec.launcher.icon_path
        }

    def _drop(self, name: str, problem: str) -> None:
        """A plugin served nowhere: said in the log and in /api/status."""
        spec = self.config.servers.pop(name)
        log.warning("proxy plugin %s is not served: %s", spec.source, problem)
        self.config.broken += (BrokenPlugin(name, spec.source.removeprefix("entry point "), problem),)
        self.processes.pop(name, None)
        self.icons.pop(name, None)

    def _give_way(self, name: str, to: str) -> None:
        self._drop(name, f"server {name!r}: /{name} is taken by {to}, which was asked for by name")

    @property
    def xsrf_exempt_prefixes(self) -> tuple[str, ...]:
        """Where a proxied app's own forms and scripts post: its requests carry no X-XSRFToken."""
        b = self.settings.base_url
        return (b + "proxy/", *(b + name + "/" for name in self.processes))

    @property
    def open_paths(self) -> set[str]:
        return {f"{self.settings.base_url}server-proxy/icon/{name}" for name in self.icons}

    def add_to(self, router: web.UrlDispatcher) -> None:
        b = self.settings.base_url
        router.add_route("GET", b + "server-proxy/servers-info", self.servers_info)
        router.add_route("GET", b + "server-proxy/icon/{name}", self.icon)
        router.add_route("GET", b + "api/proxy/servers", self.list_servers)
        router.add_route("GET", b + "api/proxy/servers/{name}", self.get_server)
        router.add_route("GET", b + "api/proxy/servers/{name}/logs", self.logs)
        router.add_route("POST", b + "api/proxy/servers/{name}/{action:start|stop|restart}", self.control)
        router.add_route("*", b + r"proxy/absolute/{port:\d+}{path:(/.*)?}", self.absolute_port)
        router.add_route("*", b + r"proxy/{port:\d+}{path:(/.*)?}", self.port)
        router.add_route("*", b + r"proxy/{host:[^/:]+|\[[0-9a-fA-F:.]+\]}:{port:\d+}{path:(/.*)?}", self.host_port)
        for name in self.processes:
            router.add_route("*", b + name, self.redirect)
            router.add_route("*", b + name + "/{path:.*}", self.named)

    # lifecycle (portico.lifecycle.Component) ------------------------------------------------
    name = "proxied servers"

    async def start_up(self) -> None:
        """The servers with autostart; one that fails is logged, not fatal."""
        autostart = [p for p in self.processes.values() if p.spec.autostart and p.spec.runs_process]
        results = await asyncio.gather(*(p.ensure() for p in autostart), return_exceptions=True)
        for process, result in zip(autostart, results, strict=True):
            if isinstance(result, BaseException):
                log.error("server %s did not start: %s", process.spec.name, getattr(result, "message", result))

    def stop_accepting(self) -> None:
        """Nothing: a proxied request in flight is drained with the others."""

    async def disconnect(self, reason: str) -> None:
        """Nothing: proxied WebSockets end when their backend stops."""

    async def end(self) -> None:
        await self.forwarder.close()
        await asyncio.gather(*(p.close() for p in self.processes.values()), return_exceptions=True)

    def last_activity(self) -> float | None:
        times = [p.last_activity for p in self.processes.values()]
        return max(times) if times else None

    # proxying ----------------------------------------------------------------------------
    async def redirect(self, request: web.Request) -> web.StreamResponse:
        location = (
            request.path + "/" + (f"?{request.rel_url.raw_query_string}" if request.rel_url.raw_query_string else "")
        )
        raise web.HTTPFound(location)

    async def named(self, request: web.Request) -> web.StreamResponse:
        name = request.path[len(self.settings.base_url) :].split("/", 1)[0]
        process = self.processes[name]
        spec = process.spec
        backend = await process.ensure()
        self._touch(process, request)
        context = self.settings.base_url + name
        path = request.rel_url.raw_path if spec.absolute_url else _raw_tail(request, context)
        path = self._mapped(spec, path)
        override = (
            call_with(spec.request_headers_override, **process.template_values())
            if callable(spec.request_headers_override)
            else spec.request_headers_override
        )
        target = Target(
            backend, path, context, f"server {name}", dict(override or {}), spec.rewrite_response, spec.absolute_url
        )
        if spec.raw_socket_proxy:
            return await websocket.raw_socket(request, target)
        if websocket.wants_websocket(request):
            return await websocket.forward(self.forwarder, request, target)
        return await self.forwarder.forward(request, target)

    async def port(self, request: web.Request) -> web.StreamResponse:
        port = _port(request)
        context = f"{self.settings.base_url}proxy/{port}"
        return await self._arbitrary(request, "127.0.0.1", port, _raw_tail(request, context), context)

    async def absolute_port(self, request: web.Request) -> web.StreamResponse:
        port = _port(request)
        return await self._arbitrary(
            request,
            "127.0.0.1",
            port,
            request.rel_url.raw_path,
            f"{self.settings.base_url}proxy/absolute/{port}",
            absolute=True,
        )

    async def host_port(self, request: web.Request) -> web.StreamResponse:
        host, port = request.match_info["host"], _port(request)
        if not self._host_allowed(host.strip("[]")):
            raise Forbidden(f"Host {html.escape(host)} is not on the proxy's allow list (option proxy_host_allowlist).")
        context = f"{self.settings.base_url}proxy/{host}:{port}"
        return await self._arbitrary(request, host.strip("[]"), port, _raw_tail(request, context), context)

    async def _arbitrary(
        self, request: web.Request, host: str, port: int, path: str, context: str, absolute: bool = False
    ) -> web.StreamResponse:
        target = Target(
            Backend(host=host, port=port),
            path,
            context,
            f"port {port}",
            rewrites=self.config.non_service_rewrite_response,
            absolute_url=absolute,
        )
        if websocket.wants_websocket(request):
            return await websocket.forward(self.forwarder, request, target)
        return await self.forwarder.forward(request, target)

    def _host_allowed(self, host: str) -> bool:
        allow = self.config.host_allowlist
        if callable(allow):
            return bool(call_with(allow, host=host, handler=None))
        for entry in allow:
            if entry == host:
                return True
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                if "*" in entry and re.fullmatch(re.escape(entry).replace(r"\*", "[^.]*"), host):
                    return True
        return False

    def _mapped(self, spec: ServerSpec, path: str) -> str:
        """mappath works on decoded paths, as in jupyter-server-proxy; an unchanged path stays as sent."""
        decoded = unquote(path)
        mapped = (
            str(call_with(spec.mappath, path=decoded)) if callable(spec.mappath) else spec.mappath.get(decoded, decoded)
        )
        return path if mapped == decoded else quote(mapped, safe="/:@!$&'()*+,;=-._~%")

    def _touch(self, process: Process, request: web.Request) -> None:
        spec = process.spec
        update = (
            call_with(spec.update_last_activity, request=request)
            if callable(spec.update_last_activity)
            else spec.update_last_activity
        )
        if update and not any(re.search(p, request.path) for p in spec.exclude_last_activity_patterns):
            process.last_activity = time.time()

    # launcher and API --------------------------------------------------------------------
    async def servers_info(self, request: web.Request) -> web.Response:
        entries = []
        for name, process in self.processes.items():
            launcher = process.spec.launcher
            entry: dict[str, Any] = {
                "name": name,
                "launcher_entry": {
                    "enabled": launcher.enabled,
                    "title": launcher.title,
                    "path_info": launcher.path_info,
                    "category": launcher.category,
                },
                "new_browser_tab": process.spec.new_browser_tab,
                **{k: v for k, v in process.info().items() if k != "name"},
            }
            if name in self.icons:
                entry["launcher_entry"]["icon_url"] = f"{self.settings.base_url}server-proxy/icon/{name}"
            entries.append(entry)
        return json_response({"server_processes": entries})

    async def icon(self, request: web.Request) -> web.StreamResponse:
        path = self.icons.get(request.match_info["name"])
        if path is None or not path.is_file():
            raise NotFound(f"No icon for server {request.match_info['name']!r}.")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.Response(body=path.read_bytes(), content_type=kind)

    def _process(self, request: web.Request) -> Process:
        process = self.processes.get(request.match_info["name"])
        if process is None:
            raise NotFound(
                f"No such server: {request.match_info['name']}; known: {', '.join(self.processes) or 'none'}."
            )
        return process

    async def list_servers(self, request: web.Request) -> web.Response:
        return json_response([p.info() for p in self.processes.values()])

    async def get_server(self, request: web.Request) -> web.Response:
        return json_response(self._process(request).info())

    async def logs(self, request: web.Request) -> web.Response:
        process = self._process(request)
        return json_response({"stdout": list(process.stdout), "stderr": list(process.stderr)})

    async def control(self, request: web.Request) -> web.Response:
        process, action = self._process(request), request.match_info["action"]
        if action == "stop":
            await process.stop("stopped through the API")
        elif action == "restart":
            await process.restart()
        else:
            await process.ensure()
        return json_response(process.info())


def _port(request: web.Request) -> int:
    port = int(request.match_info["port"])
    if not 0 < port < 65536:
        raise NotFound(f"{port} is not a port.")
    return port


def _raw_tail(request: web.Request, prefix: str) -> str:
    """The request's path after prefix, as the client encoded it (never decoded and re-encoded)."""
    return request.rel_url.raw_path[len(prefix) :] or "/"
