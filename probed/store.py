"""Latest results, published verdicts (thresholds, staleness, pending,
dependencies, shared outages) and one aggregate per group.

The scheduler writes results in; the HTTP handlers, the metrics collector and
the CLI read verdicts out. Nothing here awaits anything, so a read is instant.
Each group keeps its aggregate up to date per transition, so what a readiness
request does is one dictionary lookup.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from probed.checks.base import AnyCheck, Gauge
from probed.exclusions import Exclusions
from probed.groups import (
    ANSWERS,
    DRAINING,
    OVERALL,
    READY,
    SCHEDULER_STOPPED,
    Group,
    GroupStatus,
    kind_of,
    with_defaults,
)
from probed.model import Fleet, FleetPeers, Reason, Result, Status

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
    scope: str = "local"
    depends_on: tuple[str, ...] = ()
    status: Status | None = None  # None: pending, no run completed yet
    stale: bool = False
    held_by: str | None = None  # a parent (depends_on) whose failure keeps this check from running
    fleet: Fleet | None = None  # for a failing shared check: what the peers say
    fleet_gates: bool = True  # whether that failure gates readiness
    fleet_counts: tuple[int, int] | None = None  # (failing, answering) replicas, this one included
    passed_once: bool = False  # published pass or warn at least once (startup latches on it)
    fleet_peers: FleetPeers | None = None  # whom that verdict heard
    # Wall clock ends of the first and of the latest run of the current failure
    # streak: the window in which a peer's run is evidence (probed/peers.py).
    failure_window: tuple[float, float] | None = None
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
        """The verdict callers see: stale and held turn into fail, pending stays None."""
        return Status.FAIL if self.stale or self.held_by else self.status

    @property
    def reason(self) -> Reason | None:
        if self.held_by:
            return Reason.DEPENDENCY
        if self.stale:
            return Reason.STALE
        if self.status is None:
            return Reason.PENDING
        return self.last.reason if self.last and self.effective is Status.FAIL else None

    @property
    def output(self) -> str:
        if self.held_by:
            return f"not run: it depends on {self.held_by}, which fails"
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

    @property
    def shared_outage(self) -> bool:
        """Failing here and, by the peers' account, everywhere (or alone with `alone: pass`)."""
        failing = self.effective is Status.FAIL
        return failing and (self.fleet is Fleet.SHARED_OUTAGE or (self.fleet is Fleet.ALONE and not self.fleet_gates))

    @property
    def readiness_ignores_failure(self) -> bool:
        """A shared check fails, and readiness must not take every replica out for it."""
        return self.scope == "shared" and self.fleet is not None and not self.fleet_gates

    def record(self, result: Result, finished: float) -> None:
        self.last, self.last_finished, self.stale, self.held_by = result, finished, False, None
        self.runs[result.status] += 1
        self.history.append(Run(result.status, result.reason, result.started_at, result.duration))
        self._observe_duration(result.duration)
        if result.status is Status.FAIL:
            ended = result.started_at + result.duration
            first = ended if self.consecutive_failures == 0 or self.failure_window is None else self.failure_window[0]
            self.failure_window = (first, ended)
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            self.failures[result.reason or Reason.ERROR] += 1
        else:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            self.last_success_at = result.started_at + result.duration
        self.status = self._next_status(result.status)
        self.passed_once = self.passed_once or self.status is not Status.FAIL

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
        groups: Mapping[str, Sequence[str]] | None = None,
        latched: Iterable[str] = (),
        peers: bool = False,
        alive: Callable[[], bool] = lambda: True,
        draining: bool = False,
        exclusions: Exclusions | None = None,
    ) -> None:
        """`kept`: states carried over from a previous store (a config reload);
        `groups`: members by group name (the kinds' defaults fill the rest);
        `latched`: groups that latched in the previous store (a reload keeps them);
        `peers`: peers are configured to tell shared outages from local faults;
        `alive`: whether the scheduler makes progress (the daemon's; always, for one run);
        `draining`: probed is shutting down (a reload during server.shutdown_delay);
        `exclusions`: the operators' (probed/exclusions.py), the daemon's across reloads."""
        kept = kept or {}
        self.checks: dict[str, CheckState] = {c.name: kept.get(c.name) or state_for(c) for c in checks}
        self.version = 0  # bumped on every change; renderers cache by it
        self._shortest_stale_after = min((state.stale_after for state in self.checks.values()), default=math.inf)
        self._on_transition = on_transition
        self._peers = peers
        self._alive = alive
        self.draining = draining
        self.exclusions = exclusions or Exclusions()
        for state in self.checks.values():
            self._judge_scope(state)
        critical = (state.name for state in self.checks.values() if state.critical)
        self.groups: dict[str, Group] = {
            name: Group(name, [self.checks[n] for n in names], kind_of(name))
            for name, names in with_defaults(groups or {}, critical).items()
        }
        for name in latched:
            if name in self.groups:
                self.groups[name].latch()
        # The overall status is the group of every check. When a shared
        # dependency dies and thousands of checks flip at once, recounting them
        # all each time would be quadratic: groups count per transition.
        self.overall = Group(OVERALL, list(self.checks.values()))
        self._groups_of: dict[str, list[Group]] = {name: [self.overall] for name in self.checks}
        for group in self.groups.values():
            for name in group.members:
                self._groups_of[name].append(group)

    @property
    def status(self) -> Status:
        """What /health answers."""
        return self.group_status(OVERALL).status

    def group_status(self, name: str, excluded: Iterable[str] = ()) -> GroupStatus:
        """A group's answer and why: the one place it is decided. The probes'
        fast path, every query (?exclude, ?verbose), /health (OVERALL), the
        page, `probed check` and the group gauge all take it from here. The
        operators' exclusions count as ?exclude= does. KeyError: no such group."""
        group = self.groups[name] if name else self.overall
        if self.draining and group.kind.drains:
            return DRAINING
        if group.kind.needs_scheduler and not self._alive():
            return SCHEDULER_STOPPED
        operators = self.exclusions.table.get(name)  # the probes' path: a lookup, no call
        if operators:
            excluded = {*excluded, *operators}
        return ANSWERS[group.status_without(excluded) if excluded else group.status]

    def drain(self) -> None:
        """probed is shutting down: every kind that drains fails from now on."""
        self.draining = True
        self.touch()

    def touch(self) -> None:
        """Something beside the checks changed (draining, an exclusion): the
        bodies cached by version show it at once."""
        self.version += 1

    @property
    def ready(self) -> bool:
        """What /health/ready answers: True for 200 (pass or warn)."""
        return self.group_status(READY).passing

    def latched(self) -> frozenset[str]:
        """The groups passed for good, for the store that replaces this one."""
        return frozenset(name for name, group in self.groups.items() if group.latched)

    def record(self, name: str, result: Result, finished: float | None = None) -> None:
        state = self.checks[name]
        before = state.effective
        state.record(result, time.monotonic() if finished is None else finished)
        self._changed(state, before)

    def hold(self, name: str, parent: str, now: float | None = None) -> None:
        """The check was not run because `parent` fails: publish fail (dependency)."""
        state = self.checks[name]
        before = state.effective
        state.held_by, state.stale = parent, False
        state.last_finished = time.monotonic() if now is None else now  # decided, so not stale
        self._changed(state, before)

    def failing_parent(self, name: str) -> str | None:
        """The first check `name` depends on whose published verdict is fail."""
        for parent in self.checks[name].depends_on:
            state = self.checks.get(parent)  # `probed check NAME` may select a child without its parent
            if state is not None and state.effective is Status.FAIL:
                return parent
        return None

    def set_fleet(
        self,
        name: str,
        fleet: Fleet,
        gates: bool,
        counts: tuple[int, int] | None = None,
        peers: FleetPeers | None = None,
    ) -> None:
        """What the peers say about a failing shared check (peers.py writes it)."""
        state = self.checks[name]
        if state.fleet is None:
            return  # passing again
        if (state.fleet, state.fleet_gates, state.fleet_counts) == (fleet, gates, counts):
            if state.fleet_peers != peers:  # the same verdict from other peers: /health lists them
                state.fleet_peers = peers
                self.version += 1
            return
        state.fleet_peers = peers
        state.fleet, state.fleet_gates, state.fleet_counts = fleet, gates, counts
        self._changed(state, state.effective)

    def mark_stale(self, now: float | None = None, waiting: Container[str] = ()) -> float:
        """Publish fail for every check whose last run is too old, except those
        `waiting` (for a free slot, or running once they got one late): they
        are late, the scheduler is not stuck.
        Returns when (time.monotonic()) the next check may go stale: the soonest
        last run plus its stale_after, or now plus the shortest stale_after,
        which the next run of a check that is stale or has not run starts."""
        now = time.monotonic() if now is None else now
        soonest = now + self._shortest_stale_after
        for state in self.checks.values():
            if state.last_finished is None or state.stale:
                continue
            deadline = state.last_finished + state.stale_after
            if now > deadline:
                if state.name not in waiting:
                    before = state.effective
                    state.stale = True
                    self._changed(state, before)  # fail -> stale is no change of verdict: not a transition
            elif deadline < soonest:
                soonest = deadline
        return soonest

    def _judge_scope(self, state: CheckState) -> None:
        """A failing shared check does not gate readiness until the peers say
        the fault is local; passing, it has nothing to ask."""
        if state.scope != "shared" or state.effective is not Status.FAIL:
            state.fleet, state.fleet_gates, state.fleet_counts, state.fleet_peers = None, True, None, None
        elif state.fleet is None:
            state.fleet, state.fleet_gates = (Fleet.ASKING if self._peers else Fleet.NO_PEERS), False

    def _changed(self, state: CheckState, before: Status | None) -> None:
        self.version += 1
        self._judge_scope(state)
        for group in self._groups_of[state.name]:
            group.update(state)
        if state.effective is not before and self._on_transition is not None:
            self._on_transition(state, before)


def state_for(check: AnyCheck) -> CheckState:
    """A new check's state: pending, no run yet."""
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
        gauges=check.exported_gauges(),
        scope=opts.scope,
        depends_on=tuple(opts.depends_on),
    )
