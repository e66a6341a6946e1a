"""HTTP apps the checks and probed talk to: the target with every behaviour the
http check judges, a dependency whose health a test flips, and two ways to
serve an app on a free port (in the test's loop, or in a thread of its own)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from aiohttp import web

from tests.support.net import free_port

TOKEN = web.AppKey("token", str)  # the Authorization header /auth accepts


def target_app() -> web.Application:
    """An HTTP dependency with every behaviour the http check must judge."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="all good")

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="database exploded")

    async def status_json(request: web.Request) -> web.Response:
        return web.json_response({"status": request.query.get("status", "ok"), "checks": [{"up": True}]})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "5")))
        return web.Response(text="finally")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        return web.json_response({"method": request.method, "headers": dict(request.headers), "body": body})

    async def needs_token(request: web.Request) -> web.Response:
        expected = request.app[TOKEN]
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="who are you")
        return web.Response(text="welcome")

    app = web.Application()
    app[TOKEN] = ""
    app.router.add_get("/ok", ok)
    app.router.add_get("/error", error)
    app.router.add_get("/json", status_json)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/auth", needs_token)
    return app


def switch_app() -> tuple[web.Application, dict[str, int]]:
    """A dependency whose /health answers what the test sets: state["status"]."""
    state = {"status": 200}

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=state["status"], text=f"status {state['status']}")

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="app says hi")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/", hello)
    return app, state


@asynccontextmanager
async def serve_app(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Run an aiohttp app on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextmanager
def app_in_thread(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app from a thread of its own, for tests that drive
    probed as a separate process; yields the base URL."""

    loop = asyncio.new_event_loop()
    started = threading.Event()
    urls: list[str] = []

    async def main(stop: asyncio.Event) -> None:
        async with serve_app(app) as url:
            urls.append(url)
            started.set()
            await stop.wait()

    stop_event: list[asyncio.Event] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        stop_event.append(asyncio.Event())
        loop.run_until_complete(main(stop_event[0]))
        # Handlers still sleeping (/slow) end with the loop, not after it.
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("test server did not start")
    try:
        yield urls[0]
    finally:
        loop.call_soon_threadsafe(stop_event[0].set)
        thread.join(10)
        loop.close()
