"""``/metrics`` in the Prometheus text format: the dashboard's counters, for an operator's own monitoring.

Each scrape reads the store (a collector on a registry of the portal's own, never the library's global
default one), so the numbers are the same the dashboard shows and survive a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.server.portal.dashboard import SERIES, Dashboard

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _DashboardCollector(Collector):
    def __init__(self, read: Callable[[], tuple[Dashboard, dict[str, int]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        board, totals = self._read()
        for s in SERIES:
            if s.name in ("keys_published", "list_files", "tans_expired"):
                gauge = GaugeMetricFamily(f"proxitrace_{s.name}", f"{s.title}, within the dashboard's window")
                gauge.add_metric([], board.total(s.name))
                yield gauge
            else:
                counter = CounterMetricFamily(f"proxitrace_{s.name}", f"{s.title}, since the store was created")
                counter.add_metric([], totals.get(s.name, 0))
                yield counter
        outbox = GaugeMetricFamily("proxitrace_federation_outbox", "Forwards waiting", labels=["state"])
        outbox.add_metric(["waiting"], board.outbox_waiting)
        outbox.add_metric(["retrying"], board.outbox_retrying)
        yield outbox
        last = GaugeMetricFamily("proxitrace_last_publish_timestamp_seconds", "End of the newest published bucket")
        last.add_metric([], board.last_publish or 0)
        yield last


def registry(read: Callable[[], tuple[Dashboard, dict[str, int]]]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_DashboardCollector(read))
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
