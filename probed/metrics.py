"""Prometheus metrics, built at scrape time from the store the HTTP API reads.

Counters therefore follow check runs, not scrapes, and /metrics can never
disagree with /health. Labels are `check` and `type` (plus a fixed `state`,
`result`, `reason` or `le` where a family needs one): cardinality is bounded
by the config.

Every family is declared once, below, as a function from a check's state (or
the daemon) to samples. /metrics writes the text from those declarations
directly, in slices on the event loop (`Exposition`): with thousands of
checks, building prometheus_client's objects took seconds of CPU per scrape,
and every probe waited for it. `create_registry` turns the same
declarations into a prometheus_client collector (probed/collector.py), for
code that wants one.
"""

from __future__ import annotations

import asyncio
import functools
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from probed import __version__
from probed.groups import LIVE, READY
from probed.model import Reason, Status
from probed.report import STATES, state_name
from probed.scheduler import SchedulerLoad
from probed.store import DURATION_BUCKETS, CheckState, Store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LABELS = ("check", "type")
FAILURE_REASONS = [r for r in Reason if r not in (Reason.STALE, Reason.PENDING, Reason.DEPENDENCY)]
BOUNDS = [*(f"{b:g}" for b in DURATION_BUCKETS), "+Inf"]
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
CHUNK = 100  # checks of one family rendered in one turn of the loop (about a millisecond)


@dataclass
class ConfigLoad:
    """Outcome of the last configuration load, for probed_config_last_load_*."""

    success: bool = True
    timestamp: float = 0.0


class MetricsSource(Protocol):
    """What the metrics read: the daemon, whose store a reload replaces."""

    store: Store
    config_load: ConfigLoad

    def peer_requests(self) -> dict[str, int]: ...

    def scheduler_load(self) -> SchedulerLoad: ...


# -- the declarations ---------------------------------------------------------------------


@dataclass(frozen=True)
class Extra:
    """Labels besides check and type, written out once: a scrape writes
    millions of samples, and formatting them each time was most of its cost."""

    labels: tuple[tuple[str, str], ...]

    @functools.cached_property
    def text(self) -> str:
        return ",".join(f'{key}="{_escape(value)}"' for key, value in self.labels)


NO_LABELS = Extra(())
Sample = tuple[str, Extra, float]  # name suffix ("", "_total", "_bucket", ...), labels, value
_STATE_LABELS = {s: Extra((("probed_check_status", s),)) for s in STATES}
_RESULT_LABELS = {s: Extra((("result", s.value),)) for s in Status}
_REASON_LABELS = {r: Extra((("reason", r.value),)) for r in FAILURE_REASONS}
_BUCKET_LABELS = [Extra((("le", bound),)) for bound in BOUNDS]


@dataclass(frozen=True)
class Family:
    name: str  # counters without _total, as OpenMetrics names them
    type: str  # gauge, counter, stateset or histogram
    help: str


@dataclass(frozen=True)
class CheckFamily(Family):
    samples: Callable[[CheckState], Iterable[Sample]]


def _gauge(value: Callable[[CheckState], float | None]) -> Callable[[CheckState], Iterable[Sample]]:
    def samples(state: CheckState) -> Iterable[Sample]:
        found = value(state)
        return () if found is None else (("", NO_LABELS, found),)

    return samples


def _status(state: CheckState) -> Iterable[Sample]:
    current = state_name(state.effective)
    return [("", _STATE_LABELS[s], 1.0 if s == current else 0.0) for s in STATES]


def _runs(state: CheckState) -> Iterable[Sample]:
    return [("_total", _RESULT_LABELS[status], state.runs[status]) for status in Status]


def _failures(state: CheckState) -> Iterable[Sample]:
    # Only reasons seen: seven zero series per check would be most of the exposition.
    failures = state.failures
    return [("_total", _REASON_LABELS[r], failures[r]) for r in FAILURE_REASONS if failures.get(r)]


def _durations(state: CheckState) -> Iterable[Sample]:
    samples: list[Sample] = []
    cumulative = 0
    for labels, count in zip(_BUCKET_LABELS, list(state.bucket_counts)):
        cumulative += count
        samples.append(("_bucket", labels, cumulative))
    samples.append(("_count", NO_LABELS, cumulative))
    samples.append(("_sum", NO_LABELS, state.duration_sum))
    return samples


def _observed(gauge_name: str) -> Callable[[CheckState], Iterable[Sample]]:
    def samples(state: CheckState) -> Iterable[Sample]:
        last = state.last
        if last is None:
            return ()
        found: list[Sample] = []
        for gauge in state.gauges:
            observation = last.observed.get(gauge.observed) if gauge.name == gauge_name else None
            if observation is not None and isinstance(observation.value, int | float):
                found.append(("", _gauge_labels(gauge.labels), float(observation.value)))
        return found

    return samples


@functools.cache
def _gauge_labels(labels: tuple[tuple[str, str], ...]) -> Extra:
    return Extra(labels) if labels else NO_LABELS


def observed_families(states: list[CheckState]) -> list[CheckFamily]:
    """The gauges each check type declares beside its code (Check.gauges).
    Types may share a gauge (http and tls: certificate expiry): one family."""
    helps = {gauge.name: gauge.help for state in states for gauge in state.gauges}
    return [CheckFamily(name, "gauge", doc, _observed(name)) for name, doc in helps.items()]


CHECK_FAMILIES = [
    CheckFamily(
        "probed_check_up",
        "gauge",
        "1 if the check's published verdict is pass or warn, else 0.",
        _gauge(lambda s: 1.0 if s.effective in (Status.PASS, Status.WARN) else 0.0),
    ),
    CheckFamily(
        "probed_check_critical",
        "gauge",
        "1 if the check gates readiness, 0 if it can only warn.",
        _gauge(lambda s: 1.0 if s.critical else 0.0),
    ),
    CheckFamily(
        "probed_check_stale",
        "gauge",
        "1 if no run completed for over twice the interval plus the timeout.",
        _gauge(lambda s: 1.0 if s.stale else 0.0),
    ),
    CheckFamily(
        "probed_check_consecutive_failures",
        "gauge",
        "Failed runs in a row.",
        _gauge(lambda s: s.consecutive_failures),
    ),
    CheckFamily(
        "probed_check_interval_seconds", "gauge", "Configured interval between runs.", _gauge(lambda s: s.interval)
    ),
    CheckFamily(
        "probed_check_last_duration_seconds",
        "gauge",
        "How long the last run took.",
        _gauge(lambda s: s.last.duration if s.last else None),
    ),
    CheckFamily(
        "probed_check_last_run_timestamp_seconds",
        "gauge",
        "When the last run started (Unix time).",
        _gauge(lambda s: s.last.started_at if s.last else None),
    ),
    CheckFamily(
        "probed_check_last_success_timestamp_seconds",
        "gauge",
        "When the last run that passed or warned ended (Unix time).",
        _gauge(lambda s: s.last_success_at),
    ),
    CheckFamily("probed_check_status", "stateset", "Published verdict of each check.", _status),
    CheckFamily("probed_check_runs", "counter", "Completed runs by result.", _runs),
    CheckFamily("probed_check_failures", "counter", "Failed runs by reason.", _failures),
    CheckFamily("probed_check_duration_seconds", "histogram", "Duration of check runs.", _durations),
    CheckFamily(
        "probed_check_shared_outage",
        "gauge",
        "1 if a shared check fails here and on more than the quorum of the replicas: readiness stays up.",
        _gauge(lambda s: (1.0 if s.shared_outage else 0.0) if s.scope == "shared" else None),
    ),
    CheckFamily(
        "probed_check_dependency_failing",
        "gauge",
        "1 if the check is not run because a check it depends on fails.",
        _gauge(lambda s: 1.0 if s.held_by else 0.0),
    ),
]


def daemon_families(source: MetricsSource) -> list[tuple[Family, list[Sample]]]:
    """The process-wide families, with their samples (a handful: computed at once)."""
    store, load, scheduler = source.store, source.config_load, source.scheduler_load()

    def one(name: str, doc: str, value: float, kind: str = "gauge") -> tuple[Family, list[Sample]]:
        return Family(name, kind, doc), [("_total" if kind == "counter" else "", NO_LABELS, value)]

    statuses: list[Sample] = [
        ("", Extra((("probed_status", s.value),)), 1.0 if s is store.status else 0.0) for s in Status
    ]
    build: list[Sample] = [("", Extra((("python", platform.python_version()), ("version", __version__))), 1.0)]
    answers = {name: store.group_status(name) for name in store.groups}
    groups: list[Sample] = [
        ("", Extra((("group", name), ("probed_group_status", s.value))), 1.0 if s is answer.status else 0.0)
        for name, answer in answers.items()
        for s in Status
    ]
    excluded: list[Sample] = [
        ("", Extra((("check", item.check), ("group", item.group))), item.expires_at) for item in store.exclusions.all()
    ]
    peers = source.peer_requests()
    peer_requests: list[Sample] = [
        ("_total", Extra((("result", result),)), peers.get(result, 0)) for result in ("answered", "unreachable")
    ]
    return [
        one("probed_ready", "1 if /health/ready answers 200.", float(answers[READY].passing)),
        one("probed_live", "1 if /health/live answers 200.", float(answers[LIVE].passing)),
        (Family("probed_status", "stateset", "Overall status, as /health answers it."), statuses),
        one("probed_checks", "Number of configured checks.", len(store.checks)),
        one(
            "probed_draining",
            "1 while probed shuts down (server.shutdown_delay): every group but live answers 503.",
            float(store.draining),
        ),
        (Family("probed_build_info", "gauge", "probed's version, as a label."), build),
        (Family("probed_group_status", "stateset", "Aggregate of each group, as /health/{group} answers it."), groups),
        (
            Family(
                "probed_exclusion_expiry_timestamp_seconds",
                "gauge",
                "When an operator's exclusion of a check from a group ends (one series while it lasts).",
            ),
            excluded,
        ),
        (
            Family("probed_peer_requests", "counter", "Requests to peers about failing shared checks, by result."),
            peer_requests,
        ),
        one("probed_config_last_load_success", "1 if the last configuration load succeeded.", float(load.success)),
        one(
            "probed_config_last_load_timestamp_seconds",
            "When the configuration was last loaded.",
            load.timestamp or time.time(),
        ),
        one(
            "probed_scheduler_saturated",
            "1 while a due check has waited over a second for a free slot.",
            float(scheduler.saturated),
        ),
        one("probed_scheduler_waiting_checks", "Checks due and waiting for a free slot.", scheduler.waiting),
        one("probed_scheduler_max_concurrency", "Checks that may run at the same time.", scheduler.max_concurrency),
        one(
            "probed_scheduler_late_runs",
            "Runs that started over a second after their planned time.",
            scheduler.late_runs,
            "counter",
        ),
        one(
            "probed_event_loop_lag_seconds",
            "Longest turn of the event loop over the last minute: the longest an event waited for it.",
            scheduler.loop_lag,
        ),
    ]


# -- the text exposition ------------------------------------------------------------------


def render(source: MetricsSource, openmetrics: bool = False, observed: bool = True) -> bytes:
    """The exposition in Prometheus text format 0.0.4, or OpenMetrics 1.0, at once.
    `observed`: False leaves out the gauges of observed values (server.details:
    token, for callers without it)."""
    return b"".join(render_slices(source, openmetrics, observed))


def render_slices(source: MetricsSource, openmetrics: bool = False, observed: bool = True) -> Iterator[bytes]:
    """The exposition as encoded slices of at most CHUNK checks of one family:
    `Exposition` hands the loop back between two.

    A reload replaces the store: the states listed at the start are the
    ones written out, each value read whole as the loop left it."""
    states = list(source.store.checks.values())
    # Labels in name order, as prometheus_client writes them: every extra
    # label (le, reason, result, probed_check_status) sorts between the two.
    labels = [(f'check="{_escape(s.name)}"', f'type="{_escape(s.type)}"') for s in states]
    out: list[str] = []
    for family, samples in daemon_families(source):
        _header(out, family, openmetrics)
        out += [f"{family.name}{suffix}{_labels(None, extra)} {_number(value)}\n" for suffix, extra, value in samples]
    for check_family in _check_families(states, observed):
        _header(out, check_family, openmetrics)
        name, samples_of = check_family.name, check_family.samples
        for index, state in enumerate(states):
            base = labels[index]
            for suffix, extra, value in samples_of(state):
                out.append(f"{name}{suffix}{_labels(base, extra)} {_number(value)}\n")
            if index % CHUNK == CHUNK - 1:
                yield "".join(out).encode()
                out.clear()
    if openmetrics:
        out.append("# EOF\n")
    yield "".join(out).encode()


def _check_families(states: list[CheckState], observed: bool) -> list[CheckFamily]:
    return CHECK_FAMILIES + observed_families(states) if observed else CHECK_FAMILIES


def _header(out: list[str], family: Family, openmetrics: bool) -> None:
    if openmetrics:
        out += [f"# HELP {family.name} {family.help}\n", f"# TYPE {family.name} {family.type}\n"]
        return
    name = f"{family.name}_total" if family.type == "counter" else family.name
    kind = "gauge" if family.type == "stateset" else family.type
    out += [f"# HELP {name} {family.help}\n", f"# TYPE {name} {kind}\n"]


def _labels(base: tuple[str, str] | None, extra: Extra) -> str:
    if base is None:
        return f"{{{extra.text}}}" if extra.labels else ""
    check, check_type = base
    return f"{{{check},{extra.text},{check_type}}}" if extra.labels else f"{{{check},{check_type}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    value = float(value)
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def exposition_format(accept: str) -> tuple[bool, str]:
    """(OpenMetrics?, content type) for a scrape's Accept header."""
    wants_openmetrics = any(part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(","))
    return wants_openmetrics, OPENMETRICS if wants_openmetrics else TEXT


class Exposition:
    """Renders /metrics on the event loop, one slice per turn of the loop, so
    that a probe waits for one slice at most; scrapes that arrive while one
    renders share its result.

    Not in a thread: a thread rendering holds the GIL for up to the switch
    interval whenever the loop releases it, and at thousands of checks the
    loop releases it at every socket call: probes waited for hundreds of
    milliseconds (docs/benchmarks.md, Probes at 2,000 checks)."""

    def __init__(self, source: MetricsSource) -> None:
        self.source = source
        self._rendering: dict[tuple[bool, bool], asyncio.Task[bytes]] = {}

    async def render(self, openmetrics: bool, observed: bool = True) -> bytes:
        key = (openmetrics, observed)
        task = self._rendering.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._render(openmetrics, observed))
            self._rendering[key] = task
            task.add_done_callback(lambda _: self._rendering.pop(key, None))
        return await asyncio.shield(task)

    async def _render(self, openmetrics: bool, observed: bool) -> bytes:
        slices = []
        for encoded in render_slices(self.source, openmetrics, observed):
            slices.append(encoded)
            await asyncio.sleep(0)  # the loop's turn: probes, runs, then the next slice
        return b"".join(slices)

    def close(self) -> None:
        for task in self._rendering.values():
            task.cancel()


def create_registry(source: MetricsSource, observed: bool = True) -> CollectorRegistry:
    """The same declarations as a prometheus_client registry, for code that wants
    one. prometheus_client is imported here, not by `probed serve`, which writes
    /metrics itself: the library costs every pod a megabyte of RSS."""
    from probed.collector import registry

    return registry(source, observed)
