"""The server's lifecycle: every component started in order and stopped in stages, in one place.

    start       tier by tier (kernels; then the notebook APIs, seeded before the URL is printed,
                and the proxied servers with autostart); a failure ends what had started
    stop        on SIGTERM/SIGINT (or when the app is torn down):
      1. stop_accepting   new work is refused (503), running notebook API requests are told
      2. disconnect       WebSocket clients are closed with a reason
      3. (aiohttp)        HTTP requests still running get shutdown_timeout seconds, then are cut
      4. end              tier by tier in reverse: notebook APIs and proxied servers, then kernels;
                          each is bounded by its own settings (kernel_shutdown_wait,
                          proxy_stop_wait), never cut, so no child outlives the server

What a shutdown cut short (requests still running when the drain ended) is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from .web.errors import Handler

log = logging.getLogger("portico")


class Component(Protocol):
    name: str

    async def start_up(self) -> None: ...

    def stop_accepting(self) -> None: ...

    async def disconnect(self, reason: str) -> None: ...

    async def end(self) -> None: ...


class Lifecycle:
    def __init__(self, tiers: Sequence[Sequence[Component]], in_flight: InFlight) -> None:
        self.tiers = tiers
        self.in_flight = in_flight

    def attach(self, app: web.Application) -> None:
        app.cleanup_ctx.append(self._lifespan)
        app.on_shutdown.append(self._stop)

    async def _lifespan(self, app: web.Application) -> AsyncIterator[None]:
        started: list[Sequence[Component]] = []
        try:
            for tier in self.tiers:
                started.append(tier)
                await asyncio.gather(*(c.start_up() for c in tier))
        except BaseException:
            await self._end(started)
            raise
        yield
        cut = self.in_flight.cut
        if cut:
            log.warning(
                "shutdown: %d requests were still running when shutdown_timeout ran out and were cut short: %s",
                len(cut),
                ", ".join(cut[:10]) + (", ..." if len(cut) > 10 else ""),
            )
        await self._end(self.tiers)

    async def _stop(self, app: web.Application) -> None:
        self.in_flight.stopping = True
        log.info("shutting down: refusing new work, closing connections, then ending kernels and servers")
        for tier in self.tiers:
            for component in tier:
                component.stop_accepting()
        await asyncio.gather(
            *(c.disconnect("server shutting down") for tier in self.tiers for c in tier), return_exceptions=True
        )

    async def _end(self, tiers: Sequence[Sequence[Component]]) -> None:
        for tier in reversed(tiers):
            results = await asyncio.gather(*(c.end() for c in tier), return_exceptions=True)
            for component, result in zip(tier, results, strict=True):
                if isinstance(result, BaseException):
                    log.error("shutdown: %s failed to end cleanly: %s", component.name, result)


class InFlight:
    """HTTP requests being handled, counted by a middleware, so a shutdown can say what it cut."""

    def __init__(self) -> None:
        self.count = 0
        self.stopping = False
        self.cut: list[str] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.count += 1
        try:
            return await handler(request)
        except asyncio.CancelledError:
            if self.stopping:  # the drain's time ran out (shutdown_timeout) with this one still running
                self.cut.append(f"{request.method} {request.path}")
            raise
        finally:
            self.count -= 1

    def collect(self) -> Iterator[Metric]:  # a /metrics collector
        yield GaugeMetricFamily("portico_http_requests_in_flight", "HTTP requests being handled", value=self.count)
