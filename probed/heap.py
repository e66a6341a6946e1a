"""Keeping the garbage collector's pauses short, whatever the number of checks.

A full collection walks every container object alive and holds the whole
process while it does: at 2,000 checks about 150,000 objects (each check's
client and state, its history, the runs in flight), 0.2 to 0.26 s a pass,
every few seconds, and each pass a probe's answer waits for. Nearly all of
those objects live long and are freed by reference counting when they go;
the collector has nothing to find among them.

So every PERIOD (sooner while objects arrive fast: BUSY) the daemon
collects once, over what is not frozen (what arrived since the last time:
cheap; a few ms at 2,000 checks against 0.25 s for a full pass), and then
freezes the heap (`gc.freeze`): later passes walk only what is new. A
frozen object that dies is still freed by reference counting; what the
collector would not free is a frozen object that ends in a reference
cycle. Hence:

- the heap freezes only on probed's own loop (probed/loop.py: on asyncio's
  in Python 3.11 every closed connection is a cycle), and only while every
  run in flight is of a type whose runs and closed checks leave no cycle
  (`Check.acyclic`, each such type held to it by tests/test_every_type.py;
  the others' runs would end as cycles);
- a reload or stop that retires checks of another type thaws the heap
  first (`gc.unfreeze`), so the next pass frees whatever cycles they leave;
- with checks of another type configured (a driver may drop, in a later
  run, an object it kept and that was frozen meanwhile), the heap is thawed
  every THAW_PERIOD as well: the next pass walks everything once and frees
  every cycle, so nothing waits for the collector longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterable

from probed.checks.base import AnyCheck
from probed.loop import sound
from probed.scheduler import on_the_grid, sleep_until

PERIOD = 5.0  # seconds between two passes at most
FIRST = 0.1  # seconds to the first: the first runs make objects fastest
SHORTEST = 0.1  # seconds between two passes at least
# A pass that took longer than this had too much to walk: the next one comes
# twice as soon (a burst of runs, at start or after a reload, makes objects
# fast), else twice as late, up to PERIOD. What one pass walks, and how long
# it holds the loop, stays about this whatever the load.
BUSY = 0.005
THAW_PERIOD = 600.0  # seconds between two thaws, with checks that may leave a cycle


def acyclic(checks: Iterable[AnyCheck]) -> bool:
    """Whether none of these checks' types may leave a reference cycle."""
    return all(type(check).acyclic for check in checks)


class Heap:
    """`quiet()` says whether the heap may be frozen now (no run that could end
    in a cycle in flight, no reload swapping checks)."""

    def __init__(
        self,
        quiet: Callable[[], bool],
        cyclic: Callable[[], bool] = lambda: False,
        period: float = PERIOD,
        first: float = FIRST,
        thaw_period: float = THAW_PERIOD,
    ) -> None:
        """`cyclic()`: whether a check that may leave a cycle is configured."""
        self.quiet = quiet
        self.cyclic = cyclic
        self.period = period
        self.first = min(first, period)
        self.thaw_period = thaw_period
        self.thaws = 0  # for tests: how many times the heap was thawed on schedule
        self.freezes = 0  # for tests and benchmarks: how many times the heap was frozen
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if sound(loop):  # elsewhere (an embedding, the tests' loops) the collector works as it always did
            self._task = loop.create_task(self._keep_frozen(), name="heap")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def retiring(self, checks: Iterable[AnyCheck]) -> None:
        """Checks about to be closed and dropped: if one may leave a cycle, thaw,
        so the collector sees them (one full pass over everything, then frozen again)."""
        if not acyclic(checks):
            gc.unfreeze()

    async def _keep_frozen(self) -> None:
        gap = self.first
        thawed = time.monotonic()
        loop = asyncio.get_running_loop()
        while True:
            await sleep_until(on_the_grid(loop.time() + gap, gap))  # in a wake the runs due then share
            if time.monotonic() - thawed >= self.thaw_period and self.cyclic():
                gc.unfreeze()  # the next pass walks everything: every cycle, frozen meanwhile or not, is freed
                thawed = time.monotonic()
                self.thaws += 1
            if not self.quiet():
                continue
            took = self.freeze()
            gap = max(SHORTEST, gap / 2) if took > BUSY else min(self.period, 2 * gap)

    def freeze(self) -> float:
        """One pass, then frozen; the seconds the pass took."""
        start = time.perf_counter()
        gc.collect()  # the cycles among what is not frozen yet: none of them is frozen as garbage
        gc.freeze()
        self.freezes += 1
        return time.perf_counter() - start
