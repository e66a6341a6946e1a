"""The scheduler under checks that raise, hang, ignore cancellation or return garbage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from probed.checks.base import AnyCheck, Check, CheckOptions
from probed.config import saturation_warning
from probed.model import CheckFailed, Outcome, Reason, Result, Status
from probed.scheduler import (
    FIRST_RUN_JITTER,
    Scheduler,
    _next_slot,
    _on_a_tick,
    _second_slot,
    first_run_soon,
    on_the_grid,
    random_phase,
    sleep_until,
)
from probed.store import Store

FAST = {"interval": 0.2, "timeout": 0.1}
CheckT = TypeVar("CheckT", bound=Check[CheckOptions])


class Counting(Check[CheckOptions]):
    def __init__(self, name: str, options: CheckOptions) -> None:
        super().__init__(name, options)
        self.runs = 0
        self.running = 0
        self.most_at_once = 0

    async def run(self) -> Outcome:
        self.runs += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(0.01)
        finally:  # a run cut by its timeout on a loaded machine has ended too
            self.running -= 1
        return Outcome(Status.PASS, f"run {self.runs}")


class Raising(Check[CheckOptions]):
    async def run(self) -> Outcome:
        raise RuntimeError("boom")


class Hanging(Check[CheckOptions]):
    async def run(self) -> Outcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class IgnoresCancellation(Check[CheckOptions]):
    async def run(self) -> Outcome:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # a badly written client, cleaning up slowly
        return Outcome()


class ReturnsGarbage(Check[CheckOptions]):
    async def run(self) -> Any:
        return 42


class NotACoroutine(Check[CheckOptions]):
    def run(self) -> Any:
        return None


def make(cls: type[CheckT], name: str, **options: Any) -> CheckT:
    return cls(name, CheckOptions(type="test", **{**FAST, **options}))


async def run_scheduler(checks: Sequence[AnyCheck], seconds: float, **kwargs: Any) -> tuple[Store, bool]:
    store = Store(checks)
    scheduler = Scheduler(list(checks), store, initial_offset=lambda check: 0.0, **kwargs)
    await scheduler.start()
    await asyncio.sleep(seconds)
    alive = scheduler.alive()
    await scheduler.stop()
    assert not scheduler.alive()
    return store, alive


async def test_misbehaving_checks_do_not_disturb_the_others() -> None:
    counting = make(Counting, "good")
    bad = [
        make(Raising, "raises"),
        make(Hanging, "hangs"),
        make(IgnoresCancellation, "stubborn"),
        make(ReturnsGarbage, "garbage"),
        make(NotACoroutine, "sync"),
    ]
    store, alive = await run_scheduler([counting, *bad], seconds=1.05)
    assert alive
    assert counting.runs >= 4  # every 0.2 s for 1 s, starting at once
    assert store.checks["good"].effective is Status.PASS
    verdicts = {
        name: (store.checks[name].effective, store.checks[name].reason, store.checks[name].output)
        for name in ("raises", "hangs", "stubborn", "garbage", "sync")
    }
    assert verdicts == {
        "raises": (Status.FAIL, Reason.ERROR, "raises: RuntimeError: boom"),
        "hangs": (Status.FAIL, Reason.TIMEOUT, "timed out after 100ms"),
        "stubborn": (Status.FAIL, Reason.TIMEOUT, "timed out after 100ms"),
        "garbage": (Status.FAIL, Reason.ERROR, "check returned int, not an Outcome"),
        "sync": (Status.FAIL, Reason.ERROR, verdicts["sync"][2]),
    }
    assert verdicts["sync"][2].startswith("sync: TypeError:")
    for check in bad:
        assert store.checks[check.name].runs[Status.FAIL] >= 4, check.name


async def test_concurrency_is_bounded() -> None:
    checks = [make(Counting, f"c{i}", interval=0.05, timeout=0.04) for i in range(4)]
    shared = {"running": 0, "most": 0}

    def tracked(original: Callable[[], Awaitable[Outcome]]) -> Callable[[], Coroutine[Any, Any, Outcome]]:
        async def run() -> Outcome:
            shared["running"] += 1
            shared["most"] = max(shared["most"], shared["running"])
            try:
                return await original()
            finally:
                shared["running"] -= 1

        return run

    for check in checks:
        check.run = tracked(check.run)  # type: ignore[method-assign]
    await run_scheduler(checks, seconds=0.3, max_concurrency=2)
    assert shared["most"] == 2


async def test_each_check_runs_one_at_a_time() -> None:
    check = make(Counting, "slowish", interval=0.02, timeout=0.015)
    await run_scheduler([check], seconds=0.2)
    assert check.most_at_once == 1


def test_missed_slots_are_skipped_not_burst() -> None:
    assert _next_slot(planned=100.0, interval=10.0, now=101.0) == 110.0
    assert _next_slot(planned=100.0, interval=10.0, now=135.0) == 140.0


def test_runs_due_within_a_tick_start_on_the_same_tick() -> None:
    assert _on_a_tick(100.001, interval=10.0) == _on_a_tick(100.049, interval=10.0) == pytest.approx(100.05)
    assert _on_a_tick(100.051, interval=10.0) == pytest.approx(100.1)  # the next tick: never before its plan
    assert _on_a_tick(100.001, interval=0.2) == pytest.approx(100.02)  # a tenth of a short interval


def test_periodic_timers_fall_on_the_ticks_runs_start_on() -> None:
    tick = _on_a_tick(12345.678, interval=10.0)
    assert on_the_grid(12345.678, period=1.0) == tick  # the same wake as the runs due then
    # A period after a tick is that tick, not the next one for a rounding error of the sum.
    assert on_the_grid(tick + 0.1, period=0.1) == pytest.approx(tick + 0.1)
    assert on_the_grid(100.001, period=0.005) == pytest.approx(100.005)  # a shorter period keeps its own


async def test_sleep_until_returns_at_the_loop_time_it_was_given() -> None:
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.05
    await sleep_until(when)
    assert loop.time() >= when


def test_first_runs_start_at_once_and_later_runs_keep_the_spread() -> None:
    hourly = make(Counting, "hourly", interval=3600.0, timeout=3.0)
    firsts = [first_run_soon(hourly) for _ in range(1000)]
    assert all(0 <= offset <= FIRST_RUN_JITTER for offset in firsts)
    assert len(set(firsts)) > 900  # jittered, not all at the same instant
    phases = [random_phase(hourly) for _ in range(1000)]
    assert max(phases) > 1800 and min(phases) < 1800  # spread over the whole interval
    fast = make(Counting, "fast", interval=0.2, timeout=0.1)
    assert all(first_run_soon(fast) <= 0.1 for _ in range(100))  # never beyond half an interval


def test_a_phase_pins_the_later_runs_to_that_point_of_the_wall_clocks_interval() -> None:
    pinned = make(Counting, "pinned", interval=60.0, timeout=3.0, phase=15.0)
    for _ in range(20):
        now = time.time()
        offset = random_phase(pinned)
        assert 0 <= offset < 60.0
        assert abs((now + offset - 15.0 + 30.0) % 60.0 - 30.0) < 0.01  # at 15 s past a minute of the wall clock


def test_the_second_run_joins_the_cadence_at_least_half_an_interval_later() -> None:
    assert _second_slot(first=0.5, cadence=40.0, interval=60.0) == 40.0
    assert _second_slot(first=0.5, cadence=10.0, interval=60.0) == 70.0  # 10 s after the first: too close
    assert _second_slot(first=0.5, cadence=30.5, interval=60.0) == 30.5
    for cadence in (0.0, 0.1, 29.9, 30.0, 59.9):
        gap = _second_slot(first=0.5, cadence=cadence, interval=60.0) - 0.5
        assert 30.0 <= gap <= 90.0, cadence


async def test_later_runs_follow_the_first_when_there_is_no_phase() -> None:
    check = make(Counting, "steady", interval=0.1, timeout=0.05)
    store = Store([check])
    scheduler = Scheduler([check], store, initial_offset=lambda check: 0.0, phase=None)
    await scheduler.start()
    await asyncio.sleep(0.35)
    await scheduler.stop()
    assert check.runs >= 3


async def test_liveness_needs_a_started_scheduler() -> None:
    check = make(Counting, "c")
    scheduler = Scheduler([check], Store([check]))
    assert not scheduler.alive()


class BrokenMapping(Check[CheckOptions]):
    async def run(self) -> Outcome:
        raise ValueError("driver said no")

    def describe_error(self, exc: Exception) -> Any:
        raise KeyError("bug in the mapping")


async def test_a_broken_error_mapping_still_reports_the_original_error() -> None:
    from probed.runner import run_once

    result = await run_once(make(BrokenMapping, "broken"))
    assert (result.status, result.reason, result.output) == (Status.FAIL, Reason.ERROR, "ValueError: driver said no")


class FailsWithoutReason(Check[CheckOptions]):
    async def run(self) -> Outcome:
        return Outcome(Status.FAIL, "disk on fire")


class ClaimsStale(Check[CheckOptions]):
    async def run(self) -> Outcome:
        raise CheckFailed("nothing ran", Reason.STALE)


async def test_a_fail_without_reason_becomes_an_error_that_says_so() -> None:
    from probed.runner import run_once

    result = await run_once(make(FailsWithoutReason, "bad"))
    assert (result.status, result.reason) == (Status.FAIL, Reason.ERROR)
    assert result.output.startswith("disk on fire; the check returned fail without a reason")


async def test_a_published_only_reason_raised_by_a_check_becomes_an_error() -> None:
    from probed.runner import run_once

    result = await run_once(make(ClaimsStale, "stale"))
    assert (result.status, result.reason) == (Status.FAIL, Reason.ERROR)
    assert "reason stale, which only probed may publish" in result.output


class Timed(Check[CheckOptions]):
    """Remembers when each of its runs started (loop time)."""

    def __init__(self, name: str, options: CheckOptions) -> None:
        super().__init__(name, options)
        self.starts: list[float] = []

    async def run(self) -> Outcome:
        self.starts.append(asyncio.get_running_loop().time())
        return Outcome()


async def test_a_reload_burst_spreads_over_the_interval_afterwards() -> None:
    # A reload runs its new and changed checks at once, without a phase of
    # their own (phase=None); their later runs must not keep hitting the
    # network in the same instant.
    interval = 0.4
    checks = [make(Timed, f"t{i}", interval=interval, timeout=0.1) for i in range(20)]
    await run_scheduler(checks, seconds=3 * interval, phase=None)
    starts = [check.starts for check in checks]
    assert all(len(runs) >= 3 for runs in starts)
    first = [runs[0] for runs in starts]
    third = [runs[2] for runs in starts]
    assert max(first) - min(first) < interval / 4  # the burst
    assert max(third) - min(third) > interval / 4  # spread again
    for runs in starts:  # and each keeps its new cadence
        assert runs[2] - runs[1] > interval / 2


async def test_checks_waiting_for_a_slot_are_late_not_stale() -> None:
    # Six hanging checks, one slot: each waits far longer than its staleness
    # limit (2 x interval + timeout) for its turn. That is saturation, not a
    # stuck scheduler, and says so.
    checks = [make(Hanging, f"h{i}", interval=0.4, timeout=0.3) for i in range(6)]
    changes: list[tuple[Status | None, Status | None]] = []
    store = Store(checks, lambda state, before: changes.append((before, state.effective)))
    scheduler = Scheduler(list[AnyCheck](checks), store, max_concurrency=1, initial_offset=lambda check: 0.0)
    with capture_logs() as logs:
        await scheduler.start()
        await asyncio.sleep(3.0)
        load = scheduler.load()
        states = list(store.checks.values())
        await scheduler.stop()
    assert load.saturated and load.waiting >= 4 and load.late_runs > 0 and load.max_concurrency == 1
    assert not any(state.stale for state in states)
    assert all(state.reason in (Reason.TIMEOUT, Reason.PENDING) for state in states)
    assert [entry["event"] for entry in logs].count("scheduler_saturated") == 1
    assert all(before is not after for before, after in changes)  # only real changes


async def test_the_watchdog_wakes_when_a_verdict_grows_stale_not_every_second() -> None:
    """An idle pod's loop is not woken each second for the watchdog: it beats
    at start, then when the soonest verdict may go stale (here, one recorded
    long ago whose check's next run is an hour away), and that verdict is
    published stale then, well before the next heartbeat."""
    check = make(Counting, "c", interval=2.0, timeout=0.5)
    store = Store([check])
    loop = asyncio.get_running_loop()
    store.record("c", Result(Status.PASS, time.time(), 0.01, "ok"), finished=loop.time() - 4.3)  # stale after 4.5 s
    scheduler = Scheduler([check], store, initial_offset=lambda check: 3600.0)
    beats = []
    await scheduler.start()
    try:
        for _ in range(25):  # 2.5 s: stale at 0.2 s, the next beat 4.5 s later (every second, 3 beats)
            beats.append(scheduler._heartbeat)
            await asyncio.sleep(0.1)
    finally:
        await scheduler.stop()
    assert store.checks["c"].stale
    assert len(set(beats[1:])) == 2  # the watchdog's first pass, and when the verdict grew stale


def test_a_failing_check_going_stale_is_no_change_of_verdict() -> None:
    check = make(Hanging, "h")
    changes: list[tuple[Status | None, Status | None]] = []
    store = Store([check], lambda state, before: changes.append((before, state.effective)))
    store.record("h", Result(Status.FAIL, 0.0, 0.1, "down", Reason.REFUSED), finished=0.0)
    version = store.version
    store.mark_stale(now=1000.0)
    assert store.checks["h"].stale and store.checks["h"].reason is Reason.STALE
    assert store.version > version  # renderers see the new reason
    assert changes == [(None, Status.FAIL)]  # but no "from fail to fail"


def test_saturation_is_foreseen_from_interval_timeout_and_concurrency() -> None:
    checks = [CheckOptions(type="test", interval=10.0, timeout=2.0) for _ in range(2000)]
    warning = saturation_warning(checks, max_concurrency=64)
    assert warning is not None and "max_concurrency 64 is below the 400 runs at once" in warning
    assert saturation_warning(checks, max_concurrency=400) is None
