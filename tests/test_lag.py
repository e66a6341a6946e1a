"""The event loop's lag, as /metrics exports it: a real stall of the loop
(a callback that blocks it) shows in probed_event_loop_lag_seconds at its
length, ages out of it once the window has passed, and is measured from
the loop's own turns, with no timer that wakes it."""

from __future__ import annotations

import asyncio
import re
import time

from probed.daemon import Daemon
from probed.lag import LoopLag
from probed.loop import run
from probed.metrics import render
from tests.support.checks import config_from

STALL = 0.3  # seconds the loop is blocked for


def exported_lag(daemon: Daemon) -> float:
    text = render(daemon).decode()
    [value] = re.findall(r"^probed_event_loop_lag_seconds (\S+)$", text, re.MULTILINE)
    return float(value)


def idle_daemon() -> Daemon:
    return Daemon(config_from({"root": {"type": "disk", "path": "/", "interval": "1h"}}))


async def stalled() -> None:
    """A turn of the loop that blocks it, as a check that blocks the loop would."""
    await asyncio.sleep(0.05)
    time.sleep(STALL)
    await asyncio.sleep(0)  # the turn ends


def test_a_stall_of_the_loop_shows_in_the_gauge_at_its_length() -> None:
    async def main() -> float:
        daemon = idle_daemon()
        await daemon.start()
        try:
            await stalled()
            return exported_lag(daemon)
        finally:
            await daemon.stop()

    assert run(main()) >= STALL


def test_an_old_stall_ages_out() -> None:
    async def main() -> tuple[float, float]:
        lag = LoopLag(window=0.6)
        lag.start()
        try:
            await stalled()
            seen = lag.recent_max()
            await asyncio.sleep(1.0)  # the window and one slice later
            return seen, lag.recent_max()
        finally:
            await lag.stop()

    seen, later = run(main())
    assert seen >= STALL
    assert later < STALL


def test_an_idle_daemon_keeps_no_timer_for_the_lag() -> None:
    """What wakes an idle daemon is the watchdog's and the heap's timers
    (each on the runs' grid), and the check's next run: the lag takes none."""

    async def main() -> list[str]:
        daemon = idle_daemon()
        await daemon.start()
        try:
            await asyncio.sleep(0.3)
            loop = asyncio.get_running_loop()
            return sorted(task.get_name() for task in asyncio.all_tasks(loop) if task is not asyncio.current_task())
        finally:
            await daemon.stop()

    assert run(main()) == ["check:root", "heap", "watchdog"]


async def test_on_a_loop_not_probeds_the_gauge_stays_zero() -> None:
    daemon = idle_daemon()
    await daemon.start()
    try:
        await stalled()
        assert exported_lag(daemon) == 0.0
    finally:
        await daemon.stop()
