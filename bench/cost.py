"""CPU per run of one check, in a fresh process: python bench/cost.py OPTIONS_JSON RUNS -> one JSON line.

OPTIONS_JSON is one check's options; an extra "_sessions_dsn" names a
PostgreSQL to count the sessions the runs open (pg_stat_database.sessions).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import yaml

from probed.checks import create_check
from probed.config import parse_config
from probed.model import Status
from probed.runner import run_once


async def sessions(dsn: str | None) -> int:
    if dsn is None:
        return 0
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT sum(sessions) FROM pg_stat_database") or 0)
    finally:
        await connection.close()


async def measure(options: dict[str, object], runs: int) -> dict[str, float]:
    dsn = options.pop("_sessions_dsn", None)
    sessions_dsn = None if dsn is None else str(dsn)
    config = parse_config(yaml.safe_dump({"checks": {"bench": options}}), "bench")
    check = create_check("bench", config.checks["bench"])
    for _ in range(5):  # warm-up: imports, first connections, caches
        await run_once(check)
    cpu, wall, failures = [], [], 0
    opened = 0
    for batch in range(3):
        before_sessions = await sessions(sessions_dsn) if batch == 0 else 0
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for _ in range(runs):
            result = await run_once(check)
            failures += result.status is Status.FAIL
        cpu.append((time.process_time() - cpu_start) / runs)
        wall.append((time.perf_counter() - wall_start) / runs)
        if batch == 0 and sessions_dsn:
            opened = await sessions(sessions_dsn) - before_sessions - 1  # minus our own count query
    await check.close()
    if failures:
        raise SystemExit(f"{failures} runs failed: {result.output}")
    return {
        "cpu_us": round(1e6 * statistics.median(cpu), 1),
        "wall_ms": round(1e3 * statistics.median(wall), 3),
        "sessions": opened,
        "runs": runs,
    }


def main() -> None:
    print(json.dumps(asyncio.run(measure(json.loads(sys.argv[1]), int(sys.argv[2])))))


if __name__ == "__main__":
    main()
