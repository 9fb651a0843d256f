"""The kernels' figures for /metrics, read from the registry when scraped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .manager import Kernels


class KernelCollector:
    def __init__(self, kernels: Kernels) -> None:
        self.kernels = kernels

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "portico_kernels", "Kernels by execution state and kernelspec", labels=["state", "kernelspec"]
        )
        for (state, spec), n in Counter((k.execution_state, k.name) for k in self.kernels.kernels.values()).items():
            by_state.add_metric([state, spec], n)
        yield by_state
        yield GaugeMetricFamily(
            "portico_websocket_connections", "Open kernel WebSocket connections", value=self.kernels.connections()
        )
        pool = GaugeMetricFamily("portico_pool_kernels", "Warm kernels ready, by kernelspec", labels=["kernelspec"])
        for spec, n in self.kernels.pool.counts().items():
            pool.add_metric([spec], n)
        yield pool
        messages = CounterMetricFamily(
            "portico_kernel_messages", "Kernel messages relayed", labels=["channel", "direction"]
        )
        for (channel, direction), n in sorted(self.kernels.stats.items()):
            messages.add_metric([channel, direction], n)
        yield messages
        relays = [k.relay for k in self.kernels.kernels.values() if k.relay is not None]
        yield GaugeMetricFamily(
            "portico_journal_bytes",
            "Bytes the kernels' journals hold for reconnecting clients",
            value=sum(r.journal.bytes for r in relays),
        )
        yield GaugeMetricFamily(
            "portico_requests_tracked",
            "Client requests the kernels have not finished (reply and idle), kept for restarts",
            value=sum(len(r.requests) for r in relays),
        )
