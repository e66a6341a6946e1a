"""The listening socket, bounded: no client can hold the sockets probes need.

Two limits keep idle clients from starving kubelet's probes of file
descriptors. Every connection may sit idle (no request yet, a half-sent
request, or kept alive between requests) for at most `idle_timeout`: aiohttp's
keep-alive timer starts when the connection is accepted, so it also bounds the
wait for the first request's headers. And the number of open connections is
capped well below RLIMIT_NOFILE: at the cap, a new connection closes the
oldest idle one, so a probe arriving on a fresh connection is always served,
and only when every connection is busy is the new one refused.
"""

from __future__ import annotations

import asyncio
import resource
import time

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger("probed.connections")

MIN_CONNECTIONS = 16
MAX_CONNECTIONS = 1024
EVICTION_LOG_PERIOD = 60.0  # seconds: under a flood, one summary line a minute, not one per connection


def connection_limit(nofile: int | None = None) -> int:
    """A quarter of the file descriptors, the rest left to checks' sockets,
    log files and the interpreter: a health sidecar needs few HTTP clients."""
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, nofile // 4))


class ConnectionGuard:
    """The listening socket's protocol factory: aiohttp's, behind a limit."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self.limit = limit
        self.evicted = 0
        self.refused = 0
        self._last_logged = 0.0

    def __call__(self) -> asyncio.BaseProtocol:
        # server.connections is in accept order: the oldest first.
        open_now = [handler for handler in self._server.connections if handler.transport is not None]
        if len(open_now) >= self.limit:
            idle = next((handler for handler in open_now if _idle(handler)), None)
            if idle is None:
                self.refused += 1
                self._log_pressure()
                return _Refuse()
            idle.force_close()
            self.evicted += 1
            self._log_pressure()
        return self._server()

    def _log_pressure(self) -> None:
        now = time.monotonic()
        if now - self._last_logged >= EVICTION_LOG_PERIOD:
            self._last_logged = now
            log.warning(
                "http_connection_limit_reached",
                limit=self.limit,
                closed_idle=self.evicted,
                refused=self.refused,
            )


def _idle(handler: RequestHandler) -> bool:
    # aiohttp has no public flag for "between requests"; if the private one
    # goes away, the oldest connection is closed whatever it does.
    return not getattr(handler, "_request_in_progress", False)


class _Refuse(asyncio.Protocol):
    """Every connection is busy with a request: close the new one at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class GuardedSite(web.BaseSite):
    """web.TCPSite with a ConnectionGuard in front of aiohttp's protocol factory."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limit: int | None = None) -> None:
        super().__init__(runner)
        self._host, self._port = host, port
        self.limit = connection_limit() if limit is None else limit
        self.guard: ConnectionGuard | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        self.guard = ConnectionGuard(server, self.limit)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.guard, self._host, self._port, backlog=self._backlog)
