"""Where probed's CPU goes per run, in a fresh process:

    python bench/run_path.py OPTIONS_JSON   -> one JSON line (µs of CPU per run)

For one check's options it measures, in this process:
- own: the check's own work, `await check.run()` in a loop;
- runner: `run_once` around a check that returns at once (the same options,
  its `run` replaced), i.e. the timeout task, timing, levels and the Result;
- store: `Store.record` of a passing Result (history, counters, duration
  buckets, the groups' counts), and of that `CheckState.record` alone;
- around: the scheduler, runner and store together with CHECKS such no-op
  checks at INTERVAL in the event loop, CPU per run (everything probed does
  around a run but the check's own I/O);
- metrics: one /metrics render of CHECKS real checks' states (built at
  scrape time: no per-run work; amortized over the runs between scrapes).
Logging is not measured: probed logs transitions, never a run.
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

from probed.checks import create_check
from probed.checks.base import AnyCheck
from probed.config import parse_config
from probed.daemon import Daemon
from probed.metrics import render
from probed.model import Outcome, Status
from probed.runner import run_once
from probed.scheduler import Scheduler
from probed.store import Store

CHECKS = 50
INTERVAL = 0.5  # seconds: 100 runs a second, as the side-by-side section schedules them
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


def checks_of(options: dict[str, Any], count: int) -> tuple[Any, list[AnyCheck]]:
    timing = {"interval": INTERVAL, "timeout": INTERVAL * 0.8}
    text = yaml.safe_dump({"checks": {f"c{i}": {**timing, **options} for i in range(count)}})
    config = parse_config(text, "bench")
    return config, [create_check(name, opts) for name, opts in config.checks.items()]


async def around(checks: list[AnyCheck], seconds: float) -> float:
    """CPU µs per run of the scheduler running `checks` (no-op) for `seconds`."""
    store = Store(checks)
    scheduler = Scheduler(checks, store, 64)
    await scheduler.start()
    await asyncio.sleep(2 * INTERVAL)  # past every first run and the join of the cadence
    runs_before = sum(sum(state.runs.values()) for state in store.checks.values())
    start = cpu()
    await asyncio.sleep(seconds)
    used = cpu() - start
    runs = sum(sum(state.runs.values()) for state in store.checks.values()) - runs_before
    await scheduler.stop()
    return 1e6 * used / runs


async def measure(options: dict[str, Any], seconds: float) -> dict[str, float]:
    config, real = checks_of(options, CHECKS)
    runs = 200
    own = await per_call(real[0].run, runs)
    daemon = Daemon(config)
    for check in real:  # states as after a run each, for the render
        daemon.store.record(check.name, await run_once(check))
    metrics = sync_per_call(lambda: render(daemon), 20)
    await asyncio.gather(*(check.close() for check in real))
    _, idle = checks_of(options, CHECKS)
    idle = [noop(check) for check in idle]
    runner = await per_call(lambda: run_once(idle[0]), 5 * runs)
    result = await run_once(idle[0])
    store = Store(idle)
    record = sync_per_call(lambda: store.record("c0", result), 5 * runs)
    state_record = sync_per_call(lambda: store.checks["c0"].record(result, 0.0), 5 * runs)
    whole = await around(idle, seconds)
    runs_per_scrape = CHECKS * SCRAPE_EVERY / INTERVAL
    return {
        "own_us": round(own, 1),
        "runner_us": round(runner, 1),
        "store_us": round(record, 1),
        "state_us": round(state_record, 1),
        "groups_us": round(record - state_record, 1),
        "around_us": round(whole, 1),
        "scheduler_us": round(whole - runner - record, 1),
        "metrics_render_us": round(metrics, 1),
        "metrics_per_run_us": round(metrics / runs_per_scrape, 2),
    }


def main() -> None:
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    print(json.dumps(asyncio.run(measure(json.loads(sys.argv[1]), seconds))))


if __name__ == "__main__":
    main()
