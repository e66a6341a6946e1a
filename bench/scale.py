"""One scheduler-scale measurement, in a fresh process so its RSS is its own.

    python bench/scale.py KIND CHECKS TARGET_URL SECONDS   -> one JSON line

Runs probed's scheduler and store in-process (what `probed serve` runs) with
CHECKS checks of KIND (http against TARGET_URL, or disk) at a 10 s interval.
After one interval of warm-up (every check has started once) it measures,
over SECONDS: CPU time of this process (all threads), RSS, and how late each
run started against its plan (drift).
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time

import yaml

from probed.checks import create_check
from probed.checks.base import AnyCheck
from probed.config import parse_config
from probed.scheduler import Scheduler
from probed.store import Store

INTERVAL = 10.0


class DriftRecorder(Scheduler):
    """The production scheduler, also keeping every run's lateness: the
    samples belong to the benchmark, not to every probed process."""

    drift: list[float]

    def started(self, check: AnyCheck, lateness: float) -> None:
        super().started(check, lateness)
        self.drift.append(lateness)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def config_text(kind: str, count: int, target: str) -> str:
    directory = tempfile.gettempdir()
    check = {"type": "http", "url": target} if kind == "http" else {"type": "disk", "path": directory}
    checks = {f"c{i}": dict(check) for i in range(count)}
    return yaml.safe_dump(
        {"defaults": {"interval": "10s", "timeout": "3s"}, "scheduler": {"max_concurrency": 256}, "checks": checks}
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(kind: str, count: int, target: str, seconds: float) -> dict[str, float]:
    baseline_rss = rss_bytes()
    config = parse_config(config_text(kind, count, target), "bench")
    checks = [create_check(name, options) for name, options in config.checks.items()]
    store = Store(checks)
    scheduler = DriftRecorder(checks, store, config.scheduler.max_concurrency)
    scheduler.drift = []
    await scheduler.start()
    await asyncio.sleep(INTERVAL + 1)  # warm-up: every check has run once
    scheduler.drift = []
    runs_before = sum(sum(state.runs.values()) for state in store.checks.values())
    cpu_before, wall_before = cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = cpu_seconds() - cpu_before, time.monotonic() - wall_before
    runs = sum(sum(state.runs.values()) for state in store.checks.values()) - runs_before
    drift = sorted(scheduler.drift)
    rss = rss_bytes()
    failing = sum(1 for state in store.checks.values() if state.effective and state.effective.value == "fail")
    await scheduler.stop()
    await asyncio.gather(*(check.close() for check in checks))  # the scheduler leaves that to its owner
    return {
        "checks": count,
        "runs": runs,
        "cpu_percent": round(100 * cpu / wall, 2),
        "cpu_us_per_run": round(1e6 * cpu / runs, 1) if runs else 0.0,
        "rss_mib": round(rss / 2**20, 1),
        "rss_per_check_kib": round((rss - baseline_rss) / count / 1024, 1),
        "drift_p50_ms": round(1000 * statistics.median(drift), 2) if drift else 0.0,
        "drift_p99_ms": round(1000 * drift[int(len(drift) * 0.99) - 1], 2) if drift else 0.0,
        "failing": failing,
    }


def main() -> None:
    kind, count, target, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    print(json.dumps(asyncio.run(measure(kind, count, target, seconds))))


if __name__ == "__main__":
    main()
