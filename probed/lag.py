"""How long the event loop's turns take: the wait every probe and every
check's timing shares.

An event that arrives while the loop runs a turn (a probe's connection, a
check's reply, a timer falling due) waits for that turn to end. probed's
loop times each of its turns (probed/loop.py); the longest of the last
WINDOW is what /metrics exports (probed_event_loop_lag_seconds): a check
that blocks the loop, or a burst of work that never yields, shows there at
its full length, as a probe would feel it.

No timer of its own: a sampler that slept and woke every 100 ms to see how
late it woke was ten wakes a second, most of the CPU of an idle probed
(bench/run_path.py's bare wake, docs/operations.md).
"""

from __future__ import annotations

import asyncio
import time

from probed.loop import Loop

WINDOW = 60.0  # seconds the recent maximum covers (about one scrape interval or more)
_BUCKETS = 6  # the window in slices, so an old maximum ages out slice by slice


class LoopLag:
    """The longest turns of the running loop; `recent_max` may be read from any thread.

    On a loop that is not probed's (a test's), nothing is timed: the gauge stays 0."""

    def __init__(self, window: float = WINDOW) -> None:
        self._slice = window / _BUCKETS
        self._maxima = [0.0] * _BUCKETS  # per slice of the window, by slice number modulo _BUCKETS
        self._slices = [-1] * _BUCKETS  # which slice each entry holds
        self._loop: Loop | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(loop, Loop):
            self._loop = loop
            loop.turns.on_turn = self.turn

    async def stop(self) -> None:
        if self._loop is not None and self._loop.turns.on_turn == self.turn:
            self._loop.turns.on_turn = None
        self._loop = None

    def recent_max(self) -> float:
        """The longest turn seen in the last WINDOW seconds (0.0 before any)."""
        current = int(time.monotonic() / self._slice)
        return max(
            (lag for lag, held in zip(self._maxima, self._slices, strict=True) if current - held < _BUCKETS),
            default=0.0,
        )

    def turn(self, seconds: float, now: float) -> None:
        """A turn of the loop took `seconds`, ending at `now` (time.monotonic()): on every turn, so kept short."""
        current = int(now / self._slice)
        index = current % _BUCKETS
        if self._slices[index] != current:
            self._slices[index], self._maxima[index] = current, 0.0
        if seconds > self._maxima[index]:
            self._maxima[index] = seconds
