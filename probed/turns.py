"""Long work on the event loop, a few milliseconds a turn.

Every check and every probe share one loop: work over thousands of items
(reading a reload's checks, building them, closing the retired ones) that
ran in one go would hold every probe for all of it, and in a thread it
holds the interpreter's lock against the loop instead (each time the loop
gives the lock up at a socket call it waits up to the switch interval, 5 ms,
to have it back: a probe makes several). `in_turns` hands the items over
one by one and gives the loop a turn whenever BUDGET of work has gone by,
so a probe waits for one budget, not the whole job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

Item = TypeVar("Item")

BUDGET = 0.005  # seconds of work between two turns: a probe waits for one at most per
# turn it needs (a few), and a reload at 2,000 checks still takes effect in seconds on a busy loop


async def in_turns(items: Iterable[Item], budget: float = BUDGET) -> AsyncIterator[Item]:
    """The items in order; between two of them, a turn of the loop when the
    work since the last turn (the caller's, done per item) reached `budget`."""
    until = time.perf_counter() + budget
    for item in items:
        yield item
        if time.perf_counter() >= until:
            await asyncio.sleep(0)
            until = time.perf_counter() + budget
