"""Builds the aiohttp application and wires the parts together; owns start-up and shutdown."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from importlib import resources
from typing import Any

import yaml
from aiohttp import web

from . import __version__
from .contents.routes import ContentsRoutes
from .execution.execution import Executions
from .execution.mcp import Mcp
from .execution.routes import ExecutionRoutes
from .kernels.manager import Kernels
from .kernels.metrics import KernelCollector
from .kernels.routes import KernelRoutes
from .kernels.sessions import Sessions
from .kernels.specs import Specs
from .lifecycle import InFlight, Lifecycle
from .memory import MemoryTrim
from .notebook_api.routes import NotebookApis
from .page.routes import PageRoutes
from .proxy.routes import ProxyRoutes
from .settings import Settings
from .times import iso
from .urls import Owners
from .web.auth import Guard
from .web.errors import error_middleware
from .web.jsonio import json_response
from .web.metrics import Metrics

log = logging.getLogger("portico")


def api_spec(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of Portico's REST API, with the base URL as its server."""
    spec: dict[str, Any] = yaml.safe_load(resources.files("portico").joinpath("api.yaml").read_text())
    spec["info"]["version"] = __version__
    spec["servers"] = [{"url": settings.base_url.rstrip("/") or "/"}]
    return spec


class ServerRoutes:
    """/api, /api/status, the API description and /metrics."""

    def __init__(
        self, settings: Settings, kernels: Kernels, metrics: Metrics, notebooks: NotebookApis, proxy: ProxyRoutes
    ) -> None:
        self.settings = settings
        self.proxy = proxy
        self.kernels = kernels
        self.notebooks = notebooks
        self.metrics = metrics
        self.started = time.time()
        self.spec = api_spec(settings)
        self.spec_yaml = yaml.safe_dump(self.spec, sort_keys=False)

    def add_to(self, router: web.UrlDispatcher) -> None:
        b = self.settings.base_url
        router.add_route("GET", b + "api", self.version)
        router.add_route("GET", b + "api/status", self.status)
        router.add_route("GET", b + "api/spec.yaml", self.spec_as_yaml)
        router.add_route("GET", b + "api/spec.json", self.spec_as_json)
        router.add_route("GET", b + "metrics", self.metrics.handler)

    async def version(self, request: web.Request) -> web.Response:
        return json_response({"version": __version__})

    async def status(self, request: web.Request) -> web.Response:
        last = self.kernels.last_activity()
        return json_response(
            {
                "started": iso(self.started),
                "last_activity": iso(last or self.started),
                "kernels": len(self.kernels.kernels),
                "connections": self.kernels.connections(),
                "notebooks": self.notebooks.status(),
                "broken_plugins": [asdict(b) for b in self.proxy.config.broken],
            }
        )

    async def spec_as_yaml(self, request: web.Request) -> web.Response:
        return web.Response(text=self.spec_yaml, content_type="application/yaml")

    async def spec_as_json(self, request: web.Request) -> web.Response:
        return json_response(self.spec)


def build_app(settings: Settings) -> web.Application:
    specs = Specs(settings.base_url, settings.default_kernel_name)
    kernels = Kernels(settings, specs)
    sessions = Sessions(kernels)
    in_flight = InFlight()
    metrics = Metrics([KernelCollector(kernels), in_flight])
    guard = Guard(settings)
    app = web.Application(
        middlewares=[
            in_flight.middleware,
            metrics.middleware,
            guard.cors_middleware,
            error_middleware,
            guard.auth_middleware,
        ],
        client_max_size=settings.max_body_size,
    )
    owners = Owners(page=settings.page)
    proxy = ProxyRoutes(settings, owners)
    notebooks = NotebookApis(settings, kernels, owners)
    ServerRoutes(settings, kernels, metrics, notebooks, proxy).add_to(app.router)
    KernelRoutes(settings, specs, kernels, sessions).add_to(app.router)
    executions = Executions(kernels, settings.base_url, settings.execution_result_ttl)
    ExecutionRoutes(settings, kernels, executions).add_to(app.router)
    mcp = Mcp(settings, kernels, executions)
    mcp.add_to(app.router)
    ContentsRoutes(settings).add_to(app.router)
    if settings.page:
        PageRoutes(settings, guard).add_to(app.router)
    proxy.add_to(app.router)
    notebooks.add_to(app.router)
    guard.open_paths |= proxy.open_paths
    guard.xsrf_exempt_prefixes += proxy.xsrf_exempt_prefixes

    Lifecycle([[kernels, MemoryTrim(settings.memory_trim_interval)], [notebooks, proxy, mcp]], in_flight).attach(app)
    return app
