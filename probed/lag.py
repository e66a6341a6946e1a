"""How late the event loop wakes a timer: the wait every probe and every
check's timing shares.

A task sleeps PERIOD at a time and notes how much later than planned it
woke. The longest lag of the last WINDOW is what /metrics exports
(probed_event_loop_lag_seconds): a check that blocks the loop, or a burst
of work that never yields, shows there as a probe would feel it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from probed.scheduler import on_the_grid, sleep_until

# Seconds between wake-ups: a stall of S shows as at least S - PERIOD. Each
# wake-up of an idle loop costs about 0.1 to 0.15 ms of CPU: at 20 ms that was
# most of an idle pod's CPU. The wake-ups fall on the ticks runs start on
# (probed/scheduler.py), so with runs due they cost no wake of their own.
PERIOD = 0.1
WINDOW = 60.0  # seconds the recent maximum covers (about one scrape interval or more)
_BUCKETS = 6  # the window in slices, so an old maximum ages out slice by slice


class LoopLag:
    """Samples the running loop's lag; `recent_max` may be read from any thread."""

    def __init__(self, period: float = PERIOD, window: float = WINDOW) -> None:
        self.period = period
        self._slice = window / _BUCKETS
        self._maxima = [0.0] * _BUCKETS  # per slice of the window, by slice number modulo _BUCKETS
        self._slices = [-1] * _BUCKETS  # which slice each entry holds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def recent_max(self) -> float:
        """The longest lag seen in the last WINDOW seconds (0.0 before any)."""
        current = int(time.monotonic() / self._slice)
        return max(
            (lag for lag, held in zip(self._maxima, self._slices, strict=True) if current - held < _BUCKETS),
            default=0.0,
        )

    def tick(self, lag: float, busy: float) -> None:
        """One wake-up, `lag` seconds late; `busy`: the CPU time the loop's
        thread spent since the previous one (the guard in tests judges that,
        which another process's load on the machine does not inflate)."""
        current = int(time.monotonic() / self._slice)
        index = current % _BUCKETS
        if self._slices[index] != current:
            self._slices[index], self._maxima[index] = current, 0.0
        self._maxima[index] = max(self._maxima[index], lag)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        busy_since = time.thread_time()
        planned = loop.time()
        while True:
            # A period after the last plan, not after the late wake: on the grid, PERIOD apart.
            planned = on_the_grid(max(planned + self.period, loop.time()), self.period)
            await sleep_until(planned)
            now_busy = time.thread_time()
            self.tick(max(0.0, loop.time() - planned), now_busy - busy_since)
            busy_since = now_busy
