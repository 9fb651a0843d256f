"""/metrics in Prometheus format.

The domain packages' collectors (kernels.metrics) are read when scraped, so the relay's hot
path only bumps plain integers; HTTP requests are counted and timed by a middleware.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.registry import Collector

from .errors import Handler


class Metrics:
    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.registry = CollectorRegistry()
        for collector in collectors:
            self.registry.register(collector)
        self.requests = PromCounter("portico_http_requests", "HTTP requests by route, method and status",
                                    ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("portico_http_request_seconds", "HTTP request latency by route",
                                 ["route", "method"], registry=self.registry)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            info = request.match_info
            route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
            self.requests.labels(route, request.method, str(status)).inc()
            self.latency.labels(route, request.method).observe(time.perf_counter() - start)

    async def handler(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
