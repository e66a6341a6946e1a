"""`probed check`: every selected check once, each timed as if it ran alone.

All checks started at the same instant on the one event loop each pay for the
others' CPU inside their timed window (a TLS handshake, a login, a driver's
parsing, served in turn): a redis check of 7 ms alone read 50 ms beside s3
and postgres (docs/benchmarks.md). So the checks start one after another, in
the config's order, and the next one starts as soon as

- no check is running (the previous ones have their verdicts), or
- the running ones have left the process idle for IDLE_GAP: they wait on
  their dependencies (a slow or hanging server), so the newcomer's CPU costs
  them at most a few ms of a window already IDLE_GAP long, and theirs does
  not land in its own; or
- it has waited half its own timeout since it could start (every selected
  parent has a verdict): a check that keeps the CPU busy throughout cannot
  hold the rest back for long.

Each check is still bounded by its own timeout, so it ends within 1.5 times
its timeout of becoming ready; with N checks that hang, `probed check` takes
about (N - 1) x IDLE_GAP plus the longest timeout, at most 1.5 x the longest
timeout (per level of depends_on).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from probed.checks.base import AnyCheck
from probed.runner import run_once
from probed.store import Store

IDLE_GAP = 0.05  # seconds of an idle process after which the running checks are taken to wait on I/O
SAMPLE = 0.005  # seconds between looks at the process's CPU time while checks run
BUSY_SHARE = 0.1  # a sample with more CPU than this share of its wall time is busy
HOLD_SHARE = 0.5  # of its own timeout: the longest a ready check waits for its turn


async def run_checks_once(checks: list[AnyCheck], groups: Mapping[str, Sequence[str]] | None = None) -> Store:
    """Every selected check once: a check runs after the selected checks it
    depends on, and not at all when one of them failed (reason dependency).
    Thresholds do not apply to one run. Every check is closed before this returns."""
    store = Store(checks, groups=groups)
    starts = _Starts(store, checks)
    try:
        await starts.run_all()
    finally:
        await starts.cancel()
        await asyncio.gather(*(check.close() for check in checks), return_exceptions=True)
    return store


class _Starts:
    """The order and moments of the starts (the module's docstring says why)."""

    def __init__(self, store: Store, checks: list[AnyCheck]) -> None:
        self._store = store
        self._pending = list(checks)  # not started nor held yet, in the config's order
        self._ready_at: dict[str, float] = {}  # check name -> when its parents all had verdicts
        self._running: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Future[None] | None = None  # a nap, cut short when a run ends
        self._ends = 0  # runs ended so far: a check may have become ready

    async def run_all(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending or self._running:
            ready = self._ready(loop.time())
            if not ready:
                if not self._running:  # only held checks were left
                    return
                await self._nap(None)  # the rest wait for parents still running
                continue
            due = [c for c in ready if loop.time() >= self._ready_at[c.name] + HOLD_SHARE * c.options.timeout]
            for check in due or ready[:1]:
                self._start(check)
            if any(c in self._pending for c in ready):
                await self._until_clear()

    async def cancel(self) -> None:
        """Cancel the runs still going (an interruption) and wait for them, so each closes its connections."""
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def _ready(self, now: float) -> list[AnyCheck]:
        """The pending checks whose selected parents all have verdicts; those with a failing parent are held."""
        ready = []
        for check in list(self._pending):
            if any(_waits_for(self._store, parent) for parent in check.options.depends_on):
                continue
            parent = self._store.failing_parent(check.name)
            if parent is not None:  # spare the dependency: the parent says it all
                self._pending.remove(check)
                self._store.hold(check.name, parent)
                continue
            self._ready_at.setdefault(check.name, now)
            ready.append(check)
        return ready

    def _start(self, check: AnyCheck) -> None:
        self._pending.remove(check)
        task = asyncio.get_running_loop().create_task(self._run(check), name=f"check:{check.name}")
        self._running.add(task)
        task.add_done_callback(self._ended)

    async def _run(self, check: AnyCheck) -> None:
        self._store.record(check.name, await run_once(check))  # recorded before the task ends: children see it

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._ends += 1
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _until_clear(self) -> None:
        """Return when the next check may start: nothing runs, the process has
        been idle for IDLE_GAP, or a ready check has waited its longest."""
        loop = asyncio.get_running_loop()
        then, cpu = loop.time(), time.process_time()
        idle_since: float | None = None
        ends, deadline = -1, 0.0
        while self._running:
            now = loop.time()
            if ends != self._ends:  # a run ended: a child may be ready, with a nearer deadline
                ends = self._ends
                ready = self._ready(now)
                deadline = min((self._ready_at[c.name] + HOLD_SHARE * c.options.timeout for c in ready), default=now)
            if now >= deadline or (idle_since is not None and now - idle_since >= IDLE_GAP):
                return
            await self._nap(min(SAMPLE, deadline - now))
            now, used = loop.time(), time.process_time()
            if used - cpu > BUSY_SHARE * (now - then):  # threads count too (boto3, lookups)
                idle_since = None
            elif idle_since is None:
                idle_since = then
            then, cpu = now, used

    async def _nap(self, seconds: float | None) -> None:
        """Sleep `seconds` (None: until a run ends), or less if a run ends meanwhile."""
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = None if seconds is None else loop.call_later(seconds, _settle, wake)
        try:
            await wake
        finally:
            if timer is not None:
                timer.cancel()
            self._wake = None


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _waits_for(store: Store, parent: str) -> bool:
    """A selected parent without a verdict yet (config validation rules out cycles)."""
    state = store.checks.get(parent)
    return state is not None and state.effective is None
