"""A WebSocket server of the tests' own (aiohttp) for the websocket check: the
app, served in the test's loop (serve_app) or in a process of its own that a
test can stop and pause (WebsocketServer).

`python -m tests.support.servers.websocket PORT [CERT KEY]` serves it on
127.0.0.1:PORT until terminated.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from pathlib import Path

from aiohttp import WSMsgType, web

from probed.checks.http_client import basic_authorization
from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import PASSWORD, ServerProcess

WS_TOKEN = "ws-s3cret-token-value"  # the X-Api-Key /private wants
WS_SUBPROTOCOL = "probe.v1"


def websocket_app() -> web.Application:
    """A WebSocket dependency with every behaviour the websocket check must judge."""

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=(WS_SUBPROTOCOL,))  # answers pings itself (autoping)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws

    async def slow(request: web.Request) -> web.WebSocketResponse:
        """Waits ?seconds= before its 101 answer, then echoes: a slow upgrade."""
        await asyncio.sleep(float(request.query.get("seconds", "0")))
        return await echo(request)

    async def greet(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("welcome, probe")
        async for _ in ws:
            pass
        return ws

    async def wrong(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(f"nope, not {message.data[::-1]}")
        return ws

    async def chatty(request: web.Request) -> web.WebSocketResponse:
        """Pings the client and pushes news before its pong: the check must see past both."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.ping(b"server-ping")
        await ws.send_str("news")
        async for _ in ws:
            pass
        return ws

    async def no_pong(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)  # receives pings, answers none
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    async def close_at_once(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close(code=1011, message=b"going away")
        return ws

    async def big(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("x" * 100_000)
        async for _ in ws:
            pass
        return ws

    async def private(request: web.Request) -> web.StreamResponse:
        """Lets in the X-Api-Key WS_TOKEN or probe's Basic login, then says the
        credential back: a server that echoes a secret."""
        credential = request.headers.get("X-Api-Key") or request.headers.get("Authorization", "")
        if credential not in (WS_TOKEN, basic_authorization("probe", PASSWORD)):
            return web.Response(status=401, text="who are you")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(f"hello, {credential}")
        async for _ in ws:
            pass
        return ws

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="database exploded")

    app = web.Application()
    for path, handler in [
        ("/echo", echo),
        ("/slow", slow),
        ("/greet", greet),
        ("/wrong", wrong),
        ("/chatty", chatty),
        ("/no-pong", no_pong),
        ("/close", close_at_once),
        ("/big", big),
        ("/private", private),
        ("/error", error),
    ]:
        app.router.add_get(path, handler)
    return app


class WebsocketServer(ServerProcess):
    """websocket_app() in a process of its own, so tests can stop and pause it."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        tls = [str(path) for path in self.tls] if self.tls else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.servers.websocket", str(self.port), *tls],
            cwd=Path(__file__).parents[3],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), f"WebSocket server on port {self.port}")


async def _serve(port: int, context: ssl.SSLContext | None) -> None:
    runner = web.AppRunner(websocket_app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    context = None
    if len(argv) == 3:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(argv[1], argv[2])
    asyncio.run(_serve(int(argv[0]), context))


if __name__ == "__main__":
    main(sys.argv[1:])
