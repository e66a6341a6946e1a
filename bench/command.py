"""CPU per run of a command check against running the same Nagios plugin with
subprocess directly: python bench/command.py RUNS -> one JSON line.

Both run /usr/lib/nagios/plugins/check_tcp against a local listener that
accepts and closes. "parent" is this process's CPU (getrusage user + system),
"children" the plugin's (reaped children), per run, median of 3 batches.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import yaml

from probed.checks import create_check
from probed.config import parse_config
from probed.model import Status
from probed.runner import run_once

PLUGIN = "/usr/lib/nagios/plugins/check_tcp"


def listener() -> int:
    """A port that accepts and closes connections, as long as this process lives."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)

    def serve() -> None:
        while True:
            connection, _ = sock.accept()
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(sock.getsockname()[1])


def cpu() -> tuple[float, float]:
    """CPU seconds of this process (all threads) and of its reaped children, to the microsecond."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def measure(run_batch: Callable[[int], None], runs: int) -> dict[str, float]:
    run_batch(5)  # warm-up
    parent, children, wall = [], [], []
    for _ in range(3):
        (parent_start, children_start), wall_start = cpu(), time.perf_counter()
        run_batch(runs)
        parent_end, children_end = cpu()
        parent.append((parent_end - parent_start) / runs)
        children.append((children_end - children_start) / runs)
        wall.append((time.perf_counter() - wall_start) / runs)
    return {
        "parent_us": round(1e6 * statistics.median(parent), 1),
        "children_us": round(1e6 * statistics.median(children), 1),
        "wall_ms": round(1e3 * statistics.median(wall), 3),
    }


def with_subprocess(argv: list[str]) -> Callable[[int], None]:
    def batch(runs: int) -> None:
        for _ in range(runs):
            # No timeout=: with one, subprocess waits in a sleep loop, slower than need be.
            done = subprocess.run(argv, capture_output=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"plugin failed: {done.stdout!r}")

    return batch


def with_asyncio(argv: list[str]) -> Callable[[int], None]:
    """The floor for an event loop: asyncio's own subprocess API, nothing of probed's."""
    loop = asyncio.new_event_loop()

    async def runs_of(count: int) -> None:
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            await process.communicate()
            if process.returncode != 0:
                raise SystemExit("plugin failed")

    def batch(runs: int) -> None:
        loop.run_until_complete(runs_of(runs))

    return batch


def with_probed(argv: list[str]) -> Callable[[int], None]:
    config = parse_config(yaml.safe_dump({"checks": {"bench": {"type": "command", "command": argv}}}), "bench")
    check = create_check("bench", config.checks["bench"])
    loop = asyncio.new_event_loop()

    async def runs_of(count: int) -> None:
        for _ in range(count):
            result = await run_once(check)
            if result.status is not Status.PASS:
                raise SystemExit(f"check failed: {result.output}")

    def batch(runs: int) -> None:
        loop.run_until_complete(runs_of(runs))

    return batch


def main() -> None:
    runs = int(sys.argv[1])
    argv = [PLUGIN, "-H", "127.0.0.1", "-p", str(listener())]
    results: dict[str, Any] = {
        "subprocess.run": measure(with_subprocess(argv), runs),
        "asyncio.create_subprocess_exec": measure(with_asyncio(argv), runs),
        "probed command check": measure(with_probed(argv), runs),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
