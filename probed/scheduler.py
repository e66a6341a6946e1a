"""Run every check on its own interval and feed the results into the store."""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Callable

import structlog

from probed.checks.base import AnyCheck
from probed.runner import run_once
from probed.store import Store

log = structlog.get_logger("probed.scheduler")

Offset = Callable[[AnyCheck], float]  # seconds from start to a check's first run (or to its cadence)

FIRST_RUN_JITTER = 1.0  # seconds: first runs start within this of start


def first_run_soon(check: AnyCheck) -> float:
    """A new pod must know its dependencies after about one timeout, not one
    interval; a little jitter still keeps first runs from all starting at once."""
    return random.uniform(0, min(FIRST_RUN_JITTER, check.options.interval / 2))


def random_phase(check: AnyCheck) -> float:
    """Where in the interval a check's later runs fall, spread at random so a
    hundred checks do not all hit the network in the same millisecond."""
    return random.uniform(0, check.options.interval)


WATCHDOG_PERIOD = 1.0  # seconds between staleness sweeps and heartbeats
LIVENESS_GRACE = 10.0  # a heartbeat older than this means the loop is stuck


class Scheduler:
    def __init__(
        self,
        checks: list[AnyCheck],
        store: Store,
        max_concurrency: int = 64,
        initial_offset: Offset = first_run_soon,
        phase: Offset | None = random_phase,
    ) -> None:
        """`phase`: where later runs fall in the interval, counted from start;
        None keeps them one interval apart from the first (a reload's kept checks)."""
        self.checks = checks
        self.store = store
        self._slots = asyncio.Semaphore(max_concurrency)
        self._initial_offset = initial_offset
        self._phase = phase
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat: float | None = None
        # How late each run started against its plan, in seconds: for benchmarks.
        self.drift: deque[float] = deque(maxlen=100_000)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.time()
        self._tasks = [loop.create_task(self._run_forever(check), name=f"check:{check.name}") for check in self.checks]
        self._tasks.append(loop.create_task(self._watchdog(), name="watchdog"))
        for task in self._tasks:
            task.add_done_callback(_log_unexpected_end)

    async def stop(self) -> None:
        """Cancel every run in flight (the checks' owner closes them)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def alive(self) -> bool:
        """True while every check loop runs and the watchdog ticks."""
        if not self._tasks or any(task.done() for task in self._tasks) or self._heartbeat is None:
            return False
        return asyncio.get_running_loop().time() - self._heartbeat < LIVENESS_GRACE

    async def _run_forever(self, check: AnyCheck) -> None:
        loop = asyncio.get_running_loop()
        interval = check.options.interval
        start = loop.time()
        planned = start + self._initial_offset(check)
        cadence = None if self._phase is None else start + self._phase(check)
        while True:
            await asyncio.sleep(max(0.0, planned - loop.time()))
            parent = self.store.failing_parent(check.name)
            if parent is not None:  # spare the dependency and the network: the parent says it all
                self.store.hold(check.name, parent)
            else:
                async with self._slots:
                    self.drift.append(loop.time() - planned)
                    result = await run_once(check)
                self.store.record(check.name, result)
            if cadence is not None:  # after the first run, join the spread cadence
                planned, cadence = _second_slot(planned, cadence, interval), None
            else:
                planned = _next_slot(planned, interval, loop.time())

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._heartbeat = loop.time()
            self.store.mark_stale()
            await asyncio.sleep(WATCHDOG_PERIOD)


def _second_slot(first: float, cadence: float, interval: float) -> float:
    """The run after the first: the first point of the spread cadence at least
    half an interval after the first run (so the two never crowd together,
    and the gap stays under 1.5 intervals, far from staleness)."""
    earliest = first + interval / 2
    if cadence < earliest:
        cadence += math.ceil((earliest - cadence) / interval) * interval
    return cadence


def _next_slot(planned: float, interval: float, now: float) -> float:
    """The next planned start; slots missed by a long run are skipped, not burst."""
    following = planned + interval
    if following < now:
        following += math.ceil((now - following) / interval) * interval
    return following


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("scheduler_task_died", task=task.get_name(), error=repr(task.exception()))
