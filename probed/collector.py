"""The metric declarations of probed/metrics.py as a prometheus_client collector,
for code that wants a registry (tests compare /metrics with the library's own
exposition). Its own module so that `probed serve`, which writes /metrics
itself, never imports prometheus_client."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from probed.metrics import Family, MetricsSource, _check_families, daemon_families


class ProbedCollector(Collector):
    def __init__(self, source: MetricsSource, observed: bool = True) -> None:
        self.source = source
        self.observed = observed  # False: no gauges of observed values (server.details: token, no token)

    def collect(self) -> Iterator[Metric]:
        for family, samples in daemon_families(self.source):
            yield _metric(family, ((dict(extra.labels), suffix, value) for suffix, extra, value in samples))
        states = list(self.source.store.checks.values())
        for check_family in _check_families(states, self.observed):
            rows = (
                ({"check": state.name, "type": state.type, **dict(extra.labels)}, suffix, value)
                for state in states
                for suffix, extra, value in check_family.samples(state)
            )
            yield _metric(check_family, rows)


def _metric(family: Family, rows: Iterable[tuple[dict[str, str], str, float]]) -> Metric:
    metric = Metric(family.name, family.help, family.type)
    for labels, suffix, value in rows:
        metric.add_sample(family.name + suffix, labels, float(value))
    return metric


def registry(source: MetricsSource, observed: bool = True) -> CollectorRegistry:
    created = CollectorRegistry(auto_describe=False)
    created.register(ProbedCollector(source, observed))
    return created
