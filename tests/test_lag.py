"""The event loop's lag, as /metrics exports it: a real stall of the loop
(a callback that blocks it) shows in probed_event_loop_lag_seconds, and
ages out of it once the window has passed."""

from __future__ import annotations

import asyncio
import re
import time

from probed.daemon import Daemon
from probed.lag import PERIOD, LoopLag
from probed.metrics import render
from tests.support.checks import config_from

STALL = 0.3  # seconds the loop is blocked for


def exported_lag(daemon: Daemon) -> float:
    text = render(daemon).decode()
    [value] = re.findall(r"^probed_event_loop_lag_seconds (\S+)$", text, re.MULTILINE)
    return float(value)


async def test_a_stall_of_the_loop_shows_in_the_gauge() -> None:
    daemon = Daemon(config_from({"root": {"type": "disk", "path": "/"}}))
    await daemon.start()
    try:
        await asyncio.sleep(0.1)  # the sampler is waiting on its timer
        time.sleep(STALL)  # a check that blocks the loop would do this
        await asyncio.sleep(0.1)  # the sampler wakes, late
        # At least the stall less one period: the timer was due somewhere inside it.
        assert exported_lag(daemon) >= STALL - PERIOD
    finally:
        await daemon.stop()


async def test_an_old_stall_ages_out() -> None:
    lag = LoopLag(window=0.6)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(STALL)
        await asyncio.sleep(0.05)
        assert lag.recent_max() >= STALL - PERIOD
        await asyncio.sleep(1.0)  # the window and one slice later
        assert lag.recent_max() < STALL - PERIOD
    finally:
        await lag.stop()
