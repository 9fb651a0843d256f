"""/metrics in Prometheus format.

Kernel and message figures are read from the registry when scraped, so the relay's hot
path only bumps plain integers; HTTP requests are counted and timed by a middleware.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..kernels.manager import Kernels
from .errors import Handler


class KernelCollector:
    def __init__(self, kernels: Kernels) -> None:
        self.kernels = kernels

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("portico_kernels", "Kernels by execution state and kernelspec",
                                     labels=["state", "kernelspec"])
        for (state, spec), n in Counter((k.execution_state, k.name) for k in self.kernels.kernels.values()).items():
            by_state.add_metric([state, spec], n)
        yield by_state
        yield GaugeMetricFamily("portico_websocket_connections", "Open kernel WebSocket connections",
                                value=self.kernels.connections())
        pool = GaugeMetricFamily("portico_pool_kernels", "Warm kernels ready, by kernelspec", labels=["kernelspec"])
        for spec, n in self.kernels.pool.counts().items():
            pool.add_metric([spec], n)
        yield pool
        messages = CounterMetricFamily("portico_kernel_messages", "Kernel messages relayed",
                                       labels=["channel", "direction"])
        for (channel, direction), n in sorted(self.kernels.stats.items()):
            messages.add_metric([channel, direction], n)
        yield messages


class Metrics:
    def __init__(self, kernels: Kernels) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(KernelCollector(kernels))
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
