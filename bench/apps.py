"""Servers the benchmarks measure probed against, each run as its own process.

python bench/apps.py bare PORT [BYTES]      constant body: the aiohttp ceiling (of that size)
python bench/apps.py inline PORT CONFIG     runs every check inside each request
python bench/apps.py target PORT [CERT KEY] an HTTP dependency answering 200 "ok" (HTTPS with CERT, KEY)
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys

from aiohttp import web

from probed.checks import create_check
from probed.config import load_config
from probed.runner import run_once


def bare_app(size: int | None = None) -> web.Application:
    body = json.dumps({"status": "pass"}).encode() if size is None else b"x" * size

    async def ready(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/health+json")

    app = web.Application()
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health", ready)
    return app


def inline_app(config_path: str) -> web.Application:
    """The design probed replaces: the health endpoint runs the checks itself."""
    config = load_config(config_path)
    checks = [create_check(name, options) for name, options in config.checks.items()]

    async def health(request: web.Request) -> web.Response:
        results = await asyncio.gather(*(run_once(check) for check in checks))
        failed = any(result.status.value == "fail" for result in results)
        body = {
            "status": "fail" if failed else "pass",
            "checks": {c.name: r.status.value for c, r in zip(checks, results)},
        }
        return web.json_response(body, status=503 if failed else 200)

    app = web.Application()
    app.router.add_get("/health/ready", health)
    app.router.add_get("/health", health)
    return app


def target_app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    return app


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    context = None
    if kind == "target" and len(sys.argv) > 4:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
    if kind == "bare":
        built = bare_app(int(sys.argv[3]) if len(sys.argv) > 3 else None)
    elif kind == "target":
        built = target_app()
    else:
        built = inline_app(sys.argv[3])
    web.run_app(built, host="127.0.0.1", port=port, access_log=None, print=None, ssl_context=context)


if __name__ == "__main__":
    main()
