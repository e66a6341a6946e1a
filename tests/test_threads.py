"""A blocking call that outlives its run makes the next run fail at once,
instead of piling threads up in the pool."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from probed.checks.threads import OneAtATime
from probed.model import CheckFailed, Reason


async def test_a_hung_call_blocks_the_next_one_not_the_pool() -> None:
    release = threading.Event()
    pool = ThreadPoolExecutor(max_workers=2)
    calls = OneAtATime[object](pool, "still stuck")
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(calls.call(release.wait), timeout=0.1)  # the runner gives up; the thread goes on
        with pytest.raises(CheckFailed) as failed:
            await calls.call(lambda: "never run")
        assert (failed.value.message, failed.value.reason) == ("still stuck", Reason.TIMEOUT)
        assert pool.submit(lambda: "free").result(timeout=5) == "free"  # the pool still has room
        release.set()
        for _ in range(100):  # once the hung call ends, calls resume
            try:
                assert await calls.call(lambda: "again") == "again"
                break
            except CheckFailed:
                await asyncio.sleep(0.02)
        else:
            raise AssertionError("calls never resumed")
    finally:
        release.set()
        pool.shutdown()
