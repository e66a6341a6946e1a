"""RSS and event-loop stalls with N s3 checks, in a fresh process.

    python bench/s3load.py CHECKS ENDPOINT SECONDS   -> one JSON line

Runs probed's daemon in-process (what `probed serve` runs, without HTTP)
with CHECKS s3 checks against ENDPOINT (moto's server, another process) at a
2 s interval. After every check has run twice, it measures over SECONDS: the
process's RSS, the garbage collector's longest pause, and how late a 5 ms
timer on the event loop fires (a probe arriving then waits as long).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time

import yaml

from probed.config import parse_config
from probed.daemon import Daemon, freeze_what_lives_forever

TICK = 0.005


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def config_text(count: int, endpoint: str) -> str:
    check = {
        "type": "s3",
        "bucket": "bench",
        "endpoint_url": endpoint,
        "addressing_style": "path",
        "region": "us-east-1",
        "access_key_id": "bench",
        "secret_access_key": "bench-secret",
        "interval": "2s",
        "timeout": "1500ms",
    }
    return yaml.safe_dump({"scheduler": {"max_concurrency": 64}, "checks": {f"s3-{i}": check for i in range(count)}})


class GcPauses:
    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.longest = max(self.longest, time.perf_counter() - self._started)


async def stalls(seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    lateness = []
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        before = loop.time()
        await asyncio.sleep(TICK)
        lateness.append(loop.time() - before - TICK)
    return lateness


async def measure(count: int, endpoint: str, seconds: float) -> dict[str, float]:
    config = parse_config(config_text(count, endpoint), "bench")
    daemon = Daemon(config)
    freeze_what_lives_forever()  # as `probed serve` does
    await daemon.start()
    try:
        deadline = time.monotonic() + 60
        while any(sum(s.runs.values()) < 2 for s in daemon.store.checks.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the s3 checks did not all run twice")
            await asyncio.sleep(0.2)
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        lateness = sorted(await stalls(seconds))
        gc.callbacks.remove(pauses)
        failing = sum(1 for s in daemon.store.checks.values() if s.last and s.last.status.value == "fail")
        return {
            "checks": count,
            "rss_mib": round(rss_mib(), 1),
            "stall_p99_ms": round(1000 * lateness[int(len(lateness) * 0.99)], 1),
            "stall_max_ms": round(1000 * lateness[-1], 1),
            "gc_longest_ms": round(1000 * pauses.longest, 1),
            "failing": failing,
        }
    finally:
        await daemon.stop()


def main() -> None:
    count, endpoint, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    print(json.dumps(asyncio.run(measure(count, endpoint, seconds))))


if __name__ == "__main__":
    main()
