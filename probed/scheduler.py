"""Run every check on its own interval and feed the results into the store."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from probed.checks.base import AnyCheck
from probed.model import Result
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
    hundred checks do not all hit the network in the same millisecond; or,
    with `phase`, at that point of each interval of the wall clock, the same
    on every replica (time.time(): the wall clock is what replicas share)."""
    interval: float = check.options.interval
    phase: float | None = check.options.phase
    if phase is not None:
        return (phase - time.time()) % interval
    return random.uniform(0, interval)


# The watchdog wakes when the next check may go stale, every WATCHDOG_PERIOD
# while checks wait for a slot (saturation is judged each second), and at
# least every HEARTBEAT_PERIOD. An idle pod's loop woke every second for it,
# each wake about as much CPU as a run's work around it (bench/pace.py).
WATCHDOG_PERIOD = 1.0
HEARTBEAT_PERIOD = 5.0
LIVENESS_GRACE = 10.0  # a heartbeat older than this means the loop is stuck
LATE = 1.0  # seconds: a run that starts later than this after its plan is late
BURST = 1.0  # seconds: a first run this close to the start is part of a burst (start-up, reload)
# Seconds a run may start after its plan: runs start on ticks of a grid every
# check shares, so runs due close together wake the event loop once. A wake
# costs more CPU than all the rest probed does around a run (bench/run_path.py).
TIMER_SLACK = 0.05
# Of a tick: a timer planned a whole number of ticks after a tick lands on
# that tick, not on the next one for a rounding error of the float sum.
GRID_TOLERANCE = 1e-6
STOP_SLICE = 64  # tasks cancelled per turn of the loop when stopping: a probe waits for one slice, not all


class Pacer:
    """Wakes runs on their tick, and lets one run start per turn of the event loop.

    Thousands of runs due together (start-up, a reload's changed checks)
    would otherwise all start in one turn: each opens a socket, and a probe
    that arrived meanwhile waits for every one of them, seconds at 2,000
    checks. One start a turn interleaves them with everything else ready,
    probes included; an idle loop turns in microseconds, so a run due alone
    starts at once.

    Runs due on the same tick share one timer, and a run waits for its tick
    and its turn on one future: asyncio.sleep took a timer, a future and a
    coroutine per run, and the turn another (bench/run_path.py)."""

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._releasing = False
        self._ticks: dict[float, list[asyncio.Future[None]]] = {}  # loop time of a tick -> runs due on it

    async def start_at(self, when: float) -> None:
        """Return at loop time `when` (at once if past), in this run's turn."""
        loop = asyncio.get_running_loop()
        if when > loop.time():
            waiter = loop.create_future()
            due = self._ticks.get(when)
            if due is None:
                due = self._ticks[when] = []
                loop.call_at(when, self._tick, when)
            due.append(waiter)
            await waiter
            return
        await self.turn()

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._releasing:  # nobody ahead: this run starts now, the next one a turn later
            self._releasing = True
            loop.call_soon(self._release_next)
            return
        waiter = loop.create_future()
        self._waiting.append(waiter)
        await waiter

    def _tick(self, when: float) -> None:
        self._waiting.extend(self._ticks.pop(when))
        if not self._releasing:  # the first run of the tick starts in this turn
            self._releasing = True
            self._release_next()

    def _release_next(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():  # a cancelled run (stop) gives its turn on
                waiter.set_result(None)
                asyncio.get_running_loop().call_soon(self._release_next)
                return
        self._releasing = False


@dataclass(frozen=True)
class SchedulerLoad:
    """Whether the schedule is kept, for /metrics."""

    max_concurrency: int
    waiting: int  # checks due and waiting for a free slot
    saturated: bool  # a due check has waited over LATE for a slot
    late_runs: int  # runs that started over LATE after their plan
    loop_lag: float = 0.0  # seconds: the event loop's longest lag of late (probed.lag)


class Scheduler:
    def __init__(
        self,
        checks: list[AnyCheck],
        store: Store,
        max_concurrency: int = 64,
        initial_offset: Offset = first_run_soon,
        phase: Offset | None = random_phase,
        late_runs: int = 0,
    ) -> None:
        """`phase`: where later runs fall in the interval, counted from start;
        None keeps them one interval apart from the first (a reload's kept
        checks), unless the first run is part of a burst (a reload's new and
        changed checks, all run at once). `late_runs`: carried over from the
        scheduler this one replaces."""
        self.checks = checks
        self.store = store
        self.max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        self._pacer = Pacer()
        self._initial_offset = initial_offset
        self._phase = phase
        self._tasks: list[asyncio.Task[None]] = []
        self._ended = 0  # tasks that ended: counted as they end, so alive() is O(1) per probe
        self._heartbeat: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[str, float] = {}  # check name -> when it was due
        self._running: set[str] = set()  # checks with a run in flight
        self._saturated = False
        self._late_runs = late_runs
        self.cyclic_runs = 0  # runs in flight of types not `acyclic`: the heap is not frozen meanwhile

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._heartbeat = loop.time()
        self._tasks = [loop.create_task(self._run_forever(check), name=f"check:{check.name}") for check in self.checks]
        self._tasks.append(loop.create_task(self._watchdog(), name="watchdog"))
        self._ended = 0
        for task in self._tasks:
            task.add_done_callback(self._task_ended)

    async def stop(self) -> None:
        """Cancel every run in flight (the checks' owner closes them), a slice
        at a time: each cancelled run closes its connection on the loop."""
        tasks, self._tasks = self._tasks, []
        for start in range(0, len(tasks), STOP_SLICE):
            chunk = tasks[start : start + STOP_SLICE]
            for task in chunk:
                task.cancel()
            await asyncio.gather(*chunk, return_exceptions=True)

    def alive(self) -> bool:
        """True while every check loop runs and the watchdog ticks."""
        tasks, loop, heartbeat = self._tasks, self._loop, self._heartbeat
        if not tasks or self._ended or loop is None or heartbeat is None:
            return False
        # The loop's clock: cheap enough for every probe.
        return loop.time() - heartbeat < LIVENESS_GRACE

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        self._ended += 1
        _log_unexpected_end(task)

    def load(self) -> SchedulerLoad:
        return SchedulerLoad(self.max_concurrency, len(self._waiting), self._saturated, self._late_runs)

    async def _run_forever(self, check: AnyCheck) -> None:
        loop = asyncio.get_running_loop()
        interval = check.options.interval
        start = loop.time()
        offset = self._initial_offset(check)
        planned = start + offset
        cadence = None if self._phase is None else start + self._phase(check)
        if cadence is None and offset <= BURST:
            # Run at once with many others (a reload's changed checks): the
            # later runs spread again, or the burst would repeat for good.
            cadence = start + random_phase(check)
        while True:
            due = _on_a_tick(planned, interval)
            await self._pacer.start_at(due)  # its tick, then its turn (a turn of the loop per run due with it)
            parent = self.store.failing_parent(check.name)
            if parent is not None:  # spare the dependency and the network: the parent says it all
                self.store.hold(check.name, parent)
            else:
                self.store.record(check.name, await self._run_in_a_slot(check, due))
            if cadence is not None:  # after the first run, join the spread cadence
                planned, cadence = _second_slot(planned, cadence, interval), None
            else:
                planned = _next_slot(planned, interval, loop.time())

    async def _run_in_a_slot(self, check: AnyCheck, planned: float) -> Result:
        loop = asyncio.get_running_loop()
        self._waiting[check.name] = planned
        try:
            async with self._slots:
                del self._waiting[check.name]
                self.started(check, loop.time() - planned)
                cyclic = 0 if check.acyclic else 1
                self.cyclic_runs += cyclic
                self._running.add(check.name)
                try:
                    return await run_once(check)
                finally:
                    self.cyclic_runs -= cyclic
                    self._running.discard(check.name)
        finally:
            self._waiting.pop(check.name, None)

    def started(self, check: AnyCheck, lateness: float) -> None:
        """A run got its slot `lateness` seconds after its plan (benchmarks
        record every value by overriding this)."""
        if lateness > LATE:
            self._late_runs += 1

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self._heartbeat = loop.time()  # asyncio's clock is time.monotonic(), the store's
            self._note_saturation(now)
            # A check waiting for a slot, or running once it has one, is late, not
            # stuck: it is not published stale (a run is bounded by its timeout,
            # so only a late check is still running when its verdict grows old).
            next_stale = self.store.mark_stale(now, waiting=self._waiting.keys() | self._running)
            wake = min(next_stale, now + (WATCHDOG_PERIOD if self._waiting else HEARTBEAT_PERIOD))
            await sleep_until(on_the_grid(max(wake, now + TIMER_SLACK), TIMER_SLACK))

    def _note_saturation(self, now: float) -> None:
        longest_wait = max((now - due for due in self._waiting.values()), default=0.0)
        saturated = longest_wait > LATE
        if saturated and not self._saturated:
            log.warning(
                "scheduler_saturated",
                waiting=len(self._waiting),
                max_concurrency=self.max_concurrency,
                longest_wait=round(longest_wait, 3),
            )
        elif self._saturated and not saturated:
            log.info("scheduler_caught_up", late_runs=self._late_runs)
        self._saturated = saturated


def _second_slot(first: float, cadence: float, interval: float) -> float:
    """The run after the first: the first point of the spread cadence at least
    half an interval after the first run (so the two never crowd together,
    and the gap stays under 1.5 intervals, far from staleness)."""
    earliest = first + interval / 2
    if cadence < earliest:
        cadence += math.ceil((earliest - cadence) / interval) * interval
    return cadence


def _on_a_tick(planned: float, interval: float) -> float:
    """The first tick at or after `planned` (ticks TIMER_SLACK apart, or a
    tenth of a shorter interval): the cadence stays the plan's, the start moves
    by less than a tick."""
    return on_the_grid(planned, interval / 10)


def on_the_grid(when: float, period: float) -> float:
    """The first tick at or after `when` for a timer of `period` seconds (the
    watchdog, the heap): a timer on the grid the runs start on fires in a
    wake of the loop that the runs due then share, not in one of its own
    (each wake costs more CPU than a run's work around it)."""
    tick = min(TIMER_SLACK, period)
    return math.ceil(when / tick - GRID_TOLERANCE) * tick


async def sleep_until(when: float) -> None:
    """Return at loop time `when` (asyncio.sleep takes a delay, counted from a later reading of the clock)."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    timer = loop.call_at(when, _wake, woken)
    try:
        await woken
    finally:
        timer.cancel()


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():  # cancelled meanwhile
        woken.set_result(None)


def _next_slot(planned: float, interval: float, now: float) -> float:
    """The next planned start; slots missed by a long run are skipped, not burst."""
    following = planned + interval
    if following < now:
        following += math.ceil((now - following) / interval) * interval
    return following


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    """Every task runs forever: one that ends was cancelled (stop) or died."""
    if not task.cancelled() and task.exception() is not None:
        log.error("scheduler_task_died", task=task.get_name(), error=repr(task.exception()))
