"""Prometheus metrics, built at scrape time from the store the HTTP API reads.

Counters therefore follow check runs, not scrapes, and /metrics can never
disagree with /health. Labels are `check` and `type` (plus a fixed `state`,
`result` or `reason` set where a family needs one): cardinality is bounded by
the config.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from probed import __version__
from probed.model import Reason, Status
from probed.store import DURATION_BUCKETS, CheckState, Store

LABELS = ["check", "type"]
STATES = ("pass", "warn", "fail", "pending")
FAILURE_REASONS = [r for r in Reason if r not in (Reason.STALE, Reason.PENDING, Reason.DEPENDENCY)]


@dataclass
class ConfigLoad:
    """Outcome of the last configuration load, for probed_config_last_load_*."""

    success: bool = True
    timestamp: float = 0.0


class MetricsSource(Protocol):
    """What the collector reads: the daemon, whose store a reload replaces."""

    store: Store
    config_load: ConfigLoad

    def alive(self) -> bool: ...

    def peer_requests(self) -> dict[str, int]: ...


class ProbedCollector(Collector):
    def __init__(self, source: MetricsSource, observed: bool = True) -> None:
        self.source = source
        self.observed = observed  # False: no gauges of observed values (server.details: token, no token)

    def collect(self) -> Iterator[Metric]:
        store = self.source.store
        states = list(store.checks.values())
        yield from _daemon_metrics(store, self.source.alive(), self.source.config_load)
        yield from _per_check_gauges(states)
        yield _group_stateset(store)
        yield from _fleet_gauges(states)
        yield _peer_requests(self.source.peer_requests())
        yield _status_stateset(states)
        yield from _counters(states)
        yield _duration_histogram(states)
        if self.observed:
            yield from _observed_gauges(states)


def create_registry(source: MetricsSource, observed: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProbedCollector(source, observed))
    return registry


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=LABELS if labels is None else labels)


def _labels(state: CheckState) -> list[str]:
    return [state.name, state.type]


def _per_check_gauges(states: list[CheckState]) -> Iterator[Metric]:
    up = _gauge("probed_check_up", "1 if the check's published verdict is pass or warn, else 0.")
    critical = _gauge("probed_check_critical", "1 if the check gates readiness, 0 if it can only warn.")
    stale = _gauge("probed_check_stale", "1 if no run completed for over twice the interval plus the timeout.")
    failures = _gauge("probed_check_consecutive_failures", "Failed runs in a row.")
    interval = _gauge("probed_check_interval_seconds", "Configured interval between runs.")
    last_duration = _gauge("probed_check_last_duration_seconds", "How long the last run took.")
    last_run = _gauge("probed_check_last_run_timestamp_seconds", "When the last run started (Unix time).")
    last_success = _gauge(
        "probed_check_last_success_timestamp_seconds", "When the last run that passed or warned ended (Unix time)."
    )
    for state in states:
        labels = _labels(state)
        up.add_metric(labels, 1.0 if state.effective in (Status.PASS, Status.WARN) else 0.0)
        critical.add_metric(labels, 1.0 if state.critical else 0.0)
        stale.add_metric(labels, 1.0 if state.stale else 0.0)
        failures.add_metric(labels, state.consecutive_failures)
        interval.add_metric(labels, state.interval)
        if state.last is not None:
            last_duration.add_metric(labels, state.last.duration)
            last_run.add_metric(labels, state.last.started_at)
        if state.last_success_at is not None:
            last_success.add_metric(labels, state.last_success_at)
    yield from (up, critical, stale, failures, interval, last_duration, last_run, last_success)


def _group_stateset(store: Store) -> Metric:
    family = StateSetMetricFamily(
        "probed_group_status", "Aggregate of each group, as /health/{group} answers it.", labels=["group"]
    )
    for name, group in store.groups.items():
        family.add_metric([name], {s.value: s is group.status for s in Status})
    return family


def _fleet_gauges(states: list[CheckState]) -> Iterator[Metric]:
    outage = _gauge(
        "probed_check_shared_outage",
        "1 if a shared check fails here and on at least the quorum of the replicas: readiness stays up.",
    )
    held = _gauge("probed_check_dependency_failing", "1 if the check is not run because a check it depends on fails.")
    for state in states:
        if state.scope == "shared":
            outage.add_metric(_labels(state), 1.0 if state.shared_outage else 0.0)
        held.add_metric(_labels(state), 1.0 if state.held_by else 0.0)
    yield from (outage, held)


def _peer_requests(counts: dict[str, int]) -> Metric:
    family = CounterMetricFamily(
        "probed_peer_requests", "Requests to peers about failing shared checks, by result.", labels=["result"]
    )
    for result in ("answered", "unreachable"):
        family.add_metric([result], counts.get(result, 0))
    return family


def _status_stateset(states: list[CheckState]) -> Metric:
    family = StateSetMetricFamily("probed_check_status", "Published verdict of each check.", labels=LABELS)
    for state in states:
        current = state.effective.value if state.effective else "pending"
        family.add_metric(_labels(state), {s: s == current for s in STATES})
    return family


def _counters(states: list[CheckState]) -> Iterator[Metric]:
    runs = CounterMetricFamily("probed_check_runs", "Completed runs by result.", labels=[*LABELS, "result"])
    failed = CounterMetricFamily("probed_check_failures", "Failed runs by reason.", labels=[*LABELS, "reason"])
    for state in states:
        for status in Status:
            runs.add_metric([*_labels(state), status.value], state.runs[status])
        for reason in FAILURE_REASONS:
            failed.add_metric([*_labels(state), reason.value], state.failures[reason])
    yield runs
    yield failed


def _duration_histogram(states: list[CheckState]) -> Metric:
    family = HistogramMetricFamily("probed_check_duration_seconds", "Duration of check runs.", labels=LABELS)
    bounds = [*(f"{b:g}" for b in DURATION_BUCKETS), "+Inf"]
    for state in states:
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, state.bucket_counts):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        family.add_metric(_labels(state), buckets, state.duration_sum)
    return family


def _observed_gauges(states: list[CheckState]) -> Iterator[Metric]:
    """The gauges each check type declares beside its code (Check.gauges).
    Types may share a gauge (http and tls: certificate expiry): one family."""
    families: dict[str, GaugeMetricFamily] = {}
    for state in states:
        for gauge in state.gauges:
            family = families.get(gauge.name)
            if family is None:
                family = families[gauge.name] = _gauge(gauge.name, gauge.help)
            observation = state.last.observed.get(gauge.observed) if state.last is not None else None
            if observation is not None and isinstance(observation.value, int | float):
                family.add_metric(_labels(state), float(observation.value))
    yield from families.values()


def _daemon_metrics(store: Store, alive: bool, load: ConfigLoad) -> Iterator[Metric]:
    ready = _gauge("probed_ready", "1 if every critical check passes (what /health/ready answers).", [])
    ready.add_metric([], 1.0 if store.ready else 0.0)
    live = _gauge("probed_live", "1 if the scheduler makes progress (what /health/live answers).", [])
    live.add_metric([], 1.0 if alive else 0.0)
    overall = StateSetMetricFamily("probed_status", "Overall status, as /health answers it.", labels=[])
    overall.add_metric([], {s.value: s is store.status for s in Status})
    checks = _gauge("probed_checks", "Number of configured checks.", [])
    checks.add_metric([], len(store.checks))
    build = _gauge("probed_build_info", "probed's version, as a label.", ["version", "python"])
    build.add_metric([__version__, platform.python_version()], 1.0)
    loaded = _gauge("probed_config_last_load_success", "1 if the last configuration load succeeded.", [])
    loaded.add_metric([], 1.0 if load.success else 0.0)
    loaded_at = _gauge("probed_config_last_load_timestamp_seconds", "When the configuration was last loaded.", [])
    loaded_at.add_metric([], load.timestamp or time.time())
    yield from (ready, live, overall, checks, build, loaded, loaded_at)
