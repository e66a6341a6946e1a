"""Latest results, published verdicts (thresholds, staleness, pending) and aggregates.

The scheduler writes results in; the HTTP handlers, the metrics collector and
the CLI read verdicts out. Nothing here awaits anything, so a read is instant.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from probed.checks.base import AnyCheck, Gauge
from probed.model import Reason, Result, Status

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Runs each check remembers: 5 minutes at the default 10 s interval, and a strip
# that fits a phone's width. About 5 KiB per check, 24 MiB at 5,000 checks
# (bench/history.py measures it; docs/benchmarks.md has the figures).
HISTORY_LENGTH = 30


class Run(NamedTuple):
    """One past run as the history keeps it: no output, no observed values,
    so that thousands of checks can keep a strip each."""

    status: Status
    reason: Reason | None
    started_at: float  # wall clock
    duration: float


@dataclass
class CheckState:
    """Everything known about one check; `status` is the published verdict."""

    name: str
    type: str
    component_type: str
    critical: bool
    interval: float
    timeout: float
    failure_threshold: int
    success_threshold: int
    gauges: tuple[Gauge, ...] = ()  # the type's observed-value gauges
    status: Status | None = None  # None: pending, no run completed yet
    stale: bool = False
    last: Result | None = None
    last_finished: float | None = None  # time.monotonic() of the last completed run
    last_success_at: float | None = None  # wall clock of the last passing or warning run
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    runs: Counter[Status] = field(default_factory=Counter)
    failures: Counter[Reason] = field(default_factory=Counter)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    history: deque[Run] = field(default_factory=lambda: deque(maxlen=HISTORY_LENGTH))  # oldest first

    @property
    def effective(self) -> Status | None:
        """The verdict callers see: stale turns into fail, pending stays None."""
        return Status.FAIL if self.stale else self.status

    @property
    def reason(self) -> Reason | None:
        if self.stale:
            return Reason.STALE
        if self.status is None:
            return Reason.PENDING
        return self.last.reason if self.last and self.effective is Status.FAIL else None

    @property
    def output(self) -> str:
        if self.stale:
            return f"stale: no run completed for over {self.stale_after:g}s"
        if self.last is None:
            return "pending: the first run has not completed"
        note = ""
        if self.last.status is Status.FAIL and self.status is not Status.FAIL:
            note = f"({self.consecutive_failures} of {self.failure_threshold} failures before fail)"
        elif self.last.status is not Status.FAIL and self.status is Status.FAIL:
            note = f"({self.consecutive_successes} of {self.success_threshold} successes before pass)"
        return " ".join(part for part in (self.last.output, note) if part)

    @property
    def stale_after(self) -> float:
        return 2 * self.interval + self.timeout

    def record(self, result: Result, finished: float) -> None:
        self.last, self.last_finished, self.stale = result, finished, False
        self.runs[result.status] += 1
        self.history.append(Run(result.status, result.reason, result.started_at, result.duration))
        self._observe_duration(result.duration)
        if result.status is Status.FAIL:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            self.failures[result.reason or Reason.ERROR] += 1
        else:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            self.last_success_at = result.started_at + result.duration
        self.status = self._next_status(result.status)

    def _next_status(self, latest: Status) -> Status:
        if self.status is None:  # the first verdict has no history to smooth over
            return latest
        if latest is Status.FAIL:
            crossed = self.status is Status.FAIL or self.consecutive_failures >= self.failure_threshold
            return Status.FAIL if crossed else self.status
        recovered = self.status is not Status.FAIL or self.consecutive_successes >= self.success_threshold
        return latest if recovered else Status.FAIL

    def _observe_duration(self, duration: float) -> None:
        self.bucket_counts[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        self.duration_sum += duration


Transition = Callable[[CheckState, "Status | None"], None]


class Store:
    def __init__(
        self,
        checks: Iterable[AnyCheck],
        on_transition: Transition | None = None,
        kept: dict[str, CheckState] | None = None,
    ) -> None:
        """`kept`: states carried over from a previous store (a config reload)."""
        kept = kept or {}
        self.checks: dict[str, CheckState] = {c.name: kept.get(c.name) or _state_for(c) for c in checks}
        self.version = 0  # bumped on every change; renderers cache by it
        self.status = Status.FAIL
        self.ready = False
        self._on_transition = on_transition
        # How many checks weigh on the overall status with each verdict, kept up
        # to date per transition: when a shared dependency dies and thousands of
        # checks flip at once, recounting them all each time would be quadratic.
        self._weights: Counter[Status | None] = Counter(_weight(state) for state in self.checks.values())
        self._aggregate()

    def record(self, name: str, result: Result, finished: float | None = None) -> None:
        state = self.checks[name]
        before, weight = state.effective, _weight(state)
        state.record(result, time.monotonic() if finished is None else finished)
        self.version += 1
        if state.effective is not before:
            self._transition(state, before, weight)

    def mark_stale(self, now: float | None = None) -> None:
        """Publish fail for every check whose last run is too old."""
        now = time.monotonic() if now is None else now
        for state in self.checks.values():
            overdue = state.last_finished is not None and now - state.last_finished > state.stale_after
            if overdue and not state.stale:
                before, weight = state.effective, _weight(state)
                state.stale = True
                self.version += 1
                self._transition(state, before, weight)

    def _transition(self, state: CheckState, before: Status | None, weight_before: Status | None) -> None:
        self._weights[weight_before] -= 1
        self._weights[_weight(state)] += 1
        self._aggregate()
        if self._on_transition is not None:
            self._on_transition(state, before)

    def _aggregate(self) -> None:
        """Overall status: the worst critical verdict (pending counts as fail);
        a failing non-critical check can make it warn, never fail."""
        if self._weights[Status.FAIL]:
            self.status = Status.FAIL
        elif self._weights[Status.WARN]:
            self.status = Status.WARN
        else:
            self.status = Status.PASS
        self.ready = self.status is not Status.FAIL


def _weight(state: CheckState) -> Status | None:
    """What one check contributes to the overall status (None: nothing)."""
    verdict = state.effective
    if state.critical:
        return verdict or Status.FAIL
    if verdict is Status.FAIL:
        return Status.WARN
    return verdict


def _state_for(check: AnyCheck) -> CheckState:
    opts = check.options
    return CheckState(
        name=check.name,
        type=check.type,
        component_type=check.component_type,
        critical=opts.critical,
        interval=opts.interval,
        timeout=opts.timeout,
        failure_threshold=opts.failure_threshold,
        success_threshold=opts.success_threshold,
        gauges=check.gauges,
    )
