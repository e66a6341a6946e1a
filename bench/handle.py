"""What the app itself spends on one /health/ready request, in process: routing,
middleware (if any), handler and Response, without the socket and the HTTP
parser both apps share. Both apps in one process, interleaved, and the
minimum over repeats, so the comparison hardly moves with other load on the
machine (wrk's requests/s does).

    python bench/handle.py     prints {"bare": µs per request, "probed": µs per request}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

sys.path.append(str(Path(__file__).parent.parent))  # after PYTHONPATH, which may hold another revision

REQUESTS, REPEATS = 5000, 21


def probed_app() -> web.Application:
    from probed.config import parse_config
    from probed.daemon import Daemon
    from probed.model import Result, Status
    from probed.web import create_app

    checks = "\n".join(f"  disk-{i}:\n    type: disk\n    path: /tmp" for i in range(50))
    daemon = Daemon(parse_config(f"checks:\n{checks}\n", "bench"), initial_offset=lambda check: 3600.0)
    for name in daemon.config.checks:  # as if every check had passed; no check runs here
        daemon.store.record(name, Result(Status.PASS, time.time(), 0.001, "ok"))
    return create_app(daemon)


async def per_request(apps: dict[str, web.Application]) -> dict[str, float]:
    requests = {}
    for name, app in apps.items():
        app.freeze()
        requests[name] = make_mocked_request("GET", "/health/ready", app=app)
    best = dict.fromkeys(apps, float("inf"))
    for _ in range(REPEATS):
        for name, app in apps.items():
            request = requests[name]
            start = time.perf_counter()
            for _ in range(REQUESTS):
                response = await app._handle(request)
            best[name] = min(best[name], (time.perf_counter() - start) / REQUESTS)
            assert response.status == 200
    return {name: round(1e6 * seconds, 2) for name, seconds in best.items()}


def main() -> None:
    from bench.apps import bare_app

    print(json.dumps(asyncio.run(per_request({"bare": bare_app(), "probed": probed_app()}))))


if __name__ == "__main__":
    main()
