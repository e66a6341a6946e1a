"""CPU per http or websocket run with the phase timings' trace hooks against the same check without
them, in one process, batches alternated: python bench/http_tracing.py URL RUNS BATCHES -> one JSON
line. A ws:// or wss:// URL makes it a websocket check (upgrade and ping)."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import aiohttp
import yaml

from probed.checks import create_check
from probed.checks.http import HttpCheck
from probed.checks.websocket import WebsocketCheck
from probed.config import parse_config
from probed.runner import run_once


def without_tracing(check: HttpCheck | WebsocketCheck) -> None:
    """The session the check would build, minus its TraceConfig."""
    client = check._client
    client.connector = client._connector_class(force_close=True, use_dns_cache=False, **client._options)
    client._session = aiohttp.ClientSession(connector=client.connector, timeout=aiohttp.ClientTimeout(total=None))


async def measure(url: str, runs: int, batches: int) -> dict[str, float]:
    options = {"type": "websocket" if url.startswith(("ws://", "wss://")) else "http", "url": url}
    config = parse_config(yaml.safe_dump({"checks": {"traced": options, "plain": options}}), "bench")
    traced, plain = (create_check(name, config.checks[name]) for name in ("traced", "plain"))
    assert isinstance(plain, HttpCheck | WebsocketCheck)
    without_tracing(plain)
    for check in (traced, plain):
        for _ in range(20):  # warm-up
            await run_once(check)
    cpu: dict[str, list[float]] = {"traced": [], "plain": []}
    for _ in range(batches):
        for name, check in (("traced", traced), ("plain", plain)):
            start = time.process_time()
            for _ in range(runs):
                await run_once(check)
            cpu[name].append(1e6 * (time.process_time() - start) / runs)
    await traced.close()
    await plain.close()
    return {
        "traced_us": round(statistics.median(cpu["traced"]), 1),
        "plain_us": round(statistics.median(cpu["plain"]), 1),
        "ratio": round(statistics.median(t / p for t, p in zip(cpu["traced"], cpu["plain"])), 3),
    }


def main() -> None:
    print(json.dumps(asyncio.run(measure(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))))


if __name__ == "__main__":
    main()
