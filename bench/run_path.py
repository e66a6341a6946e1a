"""Where probed's CPU goes per run, in a fresh process:

    python bench/run_path.py OPTIONS_JSON [SECONDS]  -> one JSON line (µs of CPU per run)

For one check's options, with CHECKS such checks at INTERVAL, it measures in
this process, in alternating windows of SECONDS (so load from elsewhere hits
both alike):
- all: the scheduler, runner and store running the real checks, CPU per run;
- around: the same with each check's `run` replaced by an immediate pass:
  everything probed does around a run but the check's own work and I/O;
- own: all minus around, the check's own work.
And, each in a loop: runner, `run_once` of such a no-op check (the timeout
task, timing, levels, the Result); store, `Store.record` of a passing Result
(history, counters, duration buckets, the groups' counts) and of that
`CheckState.record` alone; scheduler: around minus runner and store (sleeping
until the slot, the semaphore, the event loop waking); metrics: one /metrics
render of the checks' states (built at scrape time: no per-run work;
amortized over the runs between scrapes). In place: the runner and the
store as they cost among the runs (cold caches after each wake, 50 checks'
states), each the around figure less that of windows where it is left out
(run_once giving a Result made once; Store.record doing nothing); the loop
is around less both: the Pacer, the slot, asyncio's steps and the wakes. The
loops alone (runner_us, store_us) are one warm check's, and run lower. Logging is not measured: probed
logs transitions, never a run. And what the wakes cost: around_saturated,
around a no-op run with SATURATED checks (100 runs to a tick's wake: probed's
work with the wakes all but gone); wakes_per_run, the times the loop slept and woke
per run in the around windows; bare_wake, one wake of the loop with nothing
to do, every IDLE_TICK (the machine's price of sleeping and waking).

The scheduler runs as in `probed serve`: on probed's event loop, timing its
turns for the lag gauge, with the heap frozen once the checks are made,
beside the heap's timer (its wakes are part of the work around the runs). Left out:
the web server (no timer while no request comes) and the file watch (a
thread polling once a second).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import yaml

from probed import scheduler as scheduler_module
from probed.checks import create_check
from probed.checks.base import AnyCheck
from probed.config import parse_config
from probed.daemon import Daemon, freeze_what_lives_forever
from probed.heap import Heap, acyclic
from probed.lag import LoopLag
from probed.loop import run
from probed.metrics import render
from probed.model import Outcome, Result, Status
from probed.runner import run_once
from probed.scheduler import Scheduler
from probed.store import Store

CHECKS = 50
INTERVAL = 0.5  # seconds: 100 runs a second, as the side-by-side section schedules them
SATURATED = 2000  # no-op checks at 1 s: 100 runs share each tick's wake, so the wakes all but leave the figure
IDLE_TICK = 0.05  # seconds: a bare wake of the loop as often as the run ticks (scheduler.TIMER_SLACK)
SCRAPE_EVERY = 15.0  # seconds: Prometheus's default, to amortize a render over the runs between scrapes


def cpu() -> float:
    return time.process_time()  # every thread of the process: resolver threads count too


async def per_call(call: Callable[[], Awaitable[object]], runs: int, batches: int = 3) -> float:
    """Median CPU µs per awaited call over `batches` batches."""
    for _ in range(min(runs, 20)):  # warm-up
        await call()
    samples = []
    for _ in range(batches):
        start = cpu()
        for _ in range(runs):
            await call()
        samples.append((cpu() - start) / runs)
    return 1e6 * statistics.median(samples)


def sync_per_call(call: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(3):
        start = cpu()
        for _ in range(runs):
            call()
        samples.append((cpu() - start) / runs)
    return 1e6 * statistics.median(samples)


def noop(check: AnyCheck) -> AnyCheck:
    """The same check, its own work replaced by an immediate pass."""

    async def run() -> Outcome:
        return Outcome(Status.PASS, "ok")

    check.run = run  # type: ignore[method-assign]
    return check


def checks_of(options: dict[str, Any], count: int, interval: float = INTERVAL) -> tuple[Any, list[AnyCheck]]:
    timing = {"interval": interval, "timeout": interval * 0.8}
    text = yaml.safe_dump({"checks": {f"c{i}": {**timing, **options} for i in range(count)}})
    config = parse_config(text, "bench")
    return config, [create_check(name, opts) for name, opts in config.checks.items()]


class Counted(Scheduler):
    """Counts the runs it starts (the store may be left out)."""

    runs = 0

    def started(self, check: AnyCheck, lateness: float) -> None:
        self.runs += 1
        super().started(check, lateness)


async def fixed_result(check: AnyCheck) -> Result:
    """In place of run_once: the same Result, made once."""
    return FIXED


FIXED = Result(status=Status.PASS, started_at=0.0, duration=0.0, output="ok", reason=None, observed={})


async def scheduled(checks: list[AnyCheck], seconds: float, runner: bool = True, store_: bool = True) -> float:
    """CPU µs per run of the scheduler running `checks` for `seconds`; without
    `runner`, run_once is left out (a Result made once in its place), without
    `store_`, Store.record: what each costs in place is the difference."""
    freeze_what_lives_forever()  # as `probed serve` does once its checks are made: each window alike
    store = Store(checks)
    if not store_:
        store.record = lambda name, result, finished=None: None  # type: ignore[method-assign]
    scheduler = Counted(checks, store, 64)
    scheduler_module.run_once = run_once if runner else fixed_result  # type: ignore[attr-defined]
    # What Daemon.start starts beside the scheduler, with its timers.
    lag, heap = LoopLag(), Heap(lambda: scheduler.cyclic_runs == 0, cyclic=lambda: not acyclic(checks))
    lag.start()
    heap.start()
    await scheduler.start()
    await asyncio.sleep(2 * INTERVAL)  # past every first run and the join of the cadence
    runs_before, wakes_before = scheduler.runs, WAKES.count
    start = cpu()
    await asyncio.sleep(seconds)
    used = cpu() - start
    runs = scheduler.runs - runs_before
    WAKES.per_run = (WAKES.count - wakes_before) / runs
    await scheduler.stop()
    await lag.stop()
    await heap.stop()
    scheduler_module.run_once = run_once  # type: ignore[attr-defined]
    return 1e6 * used / runs


class Wakes:
    """Counts the times the loop slept and woke (a select that waited): bench only, a private attribute."""

    def __init__(self) -> None:
        self.count = 0
        self.per_run = 0.0  # in the last scheduled() window

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        selector = loop._selector  # type: ignore[attr-defined]
        select = selector.select

        def counted(timeout: float | None = None) -> Any:
            if timeout is None or timeout > 0:
                self.count += 1
            return select(timeout)

        selector.select = counted


WAKES = Wakes()


async def idle_wake(seconds: float) -> float:
    """CPU µs of one wake of this loop with nothing to do but the wake: the
    machine's price for sleeping IDLE_TICK and waking, whoever pays it."""
    loop = asyncio.get_running_loop()
    wakes = round(seconds / IDLE_TICK)
    start, when = cpu(), loop.time()
    for _ in range(wakes):
        when += IDLE_TICK
        woken = loop.create_future()
        loop.call_at(when, woken.set_result, None)
        await woken
    return 1e6 * (cpu() - start) / wakes


async def measure(options: dict[str, Any], seconds: float, rounds: int) -> dict[str, float]:
    WAKES.watch(asyncio.get_running_loop())
    config, real = checks_of(options, CHECKS)
    _, idle = checks_of(options, CHECKS)
    idle = [noop(check) for check in idle]
    whole, around, no_runner, no_store = [], [], [], []
    # No-op checks of a type cheap to make by the thousand: with run() replaced, the type plays no part.
    _, busy = checks_of({"type": "disk", "path": "/"}, SATURATED, interval=1.0)
    busy = [noop(check) for check in busy]
    saturated, wakes_per_run, bare_wake = [], [], []
    for _ in range(rounds):
        whole.append(await scheduled(real, seconds))
        around.append(await scheduled(idle, seconds))
        wakes_per_run.append(WAKES.per_run)
        no_runner.append(await scheduled(idle, seconds, runner=False))
        no_store.append(await scheduled(idle, seconds, store_=False))
        saturated.append(await scheduled(busy, seconds))
        bare_wake.append(await idle_wake(seconds))
    daemon = Daemon(config)
    for check in real:  # states as after a run each, for the render
        daemon.store.record(check.name, await run_once(check))
    metrics = sync_per_call(lambda: render(daemon), 20)
    await asyncio.gather(*(check.close() for check in real))
    runner = await per_call(lambda: run_once(idle[0]), 1000)
    result = await run_once(idle[0])
    store = Store(idle)
    record = sync_per_call(lambda: store.record("c0", result), 1000)
    state_record = sync_per_call(lambda: store.checks["c0"].record(result, 0.0), 1000)
    all_us, around_us = statistics.median(whole), statistics.median(around)
    runner_in_place = statistics.median(a - b for a, b in zip(around, no_runner, strict=True))
    store_in_place = statistics.median(a - b for a, b in zip(around, no_store, strict=True))
    return {
        "all_us": round(all_us, 1),
        "own_us": round(all_us - around_us, 1),
        "around_us": round(around_us, 1),
        "runner_us": round(runner, 1),
        "store_us": round(record, 1),
        "state_us": round(state_record, 1),
        "groups_us": round(record - state_record, 1),
        "scheduler_us": round(around_us - runner - record, 1),
        "runner_in_place_us": round(runner_in_place, 1),
        "store_in_place_us": round(store_in_place, 1),
        "loop_in_place_us": round(around_us - runner_in_place - store_in_place, 1),
        "around_saturated_us": round(statistics.median(saturated), 1),
        "wakes_per_run": round(statistics.median(wakes_per_run), 3),
        "bare_wake_us": round(statistics.median(bare_wake), 1),
        "metrics_render_us": round(metrics, 1),
        "metrics_per_run_us": round(metrics / (CHECKS * SCRAPE_EVERY / INTERVAL), 2),
    }


def main() -> None:
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    print(json.dumps(run(measure(json.loads(sys.argv[1]), seconds, rounds))))


if __name__ == "__main__":
    main()
